/* Small helpers shared by the subcommands. */
#ifndef SYNCO_CLI_COMMON_H
#define SYNCO_CLI_COMMON_H

#include <stddef.h>

#include "base/thread_governor.h"
#include "data/data.h"
#include "eval/features.h"
#include "eval/knn.h"
#include "ssl/moco.h"
#include "tensor/backend.h"
#include "synco.h"

/* "s" after a count that is not 1, "" after 1: printf("%d epoch%s", n, synco_cli_s(n)). */
const char *synco_cli_s(long n);
/* "es" after a count that is not 1: printf("%d class%s", n, synco_cli_es(n)). */
const char *synco_cli_es(long n);
/* "top-1 X%  top-5 Y%" into buf; with 5 classes or fewer (where every image is in its top 5) "top-1 X%  (N classes:
 * no top-5)". The JSON outputs keep their top5 number. */
const char *synco_cli_topk(char *buf, size_t cap, double top1, double top5, int classes);
/* Normalize's mean/std: CIFAR's for images of at most 64 pixels (MoCo's CIFAR demo), ImageNet's otherwise. */
void synco_cli_norm_stats(int image_size, float mean[3], float std[3]);
/* mkdir -p. */
synco_status synco_cli_mkdirs(const char *path);
/* The folders of a path (of fewer than 1024 characters) that synco_cli_mkdirs_noting created: at[i] when the prefix
 * of i characters is one. */
typedef struct {
  unsigned char at[1024];
} synco_cli_made_dirs;
/* mkdir -p, noting in *made which folders it created, so that a command that fails can take back what it made and
 * never a folder that was there before (synco_cli_unmake_dirs). */
synco_status synco_cli_mkdirs_noting(const char *path, synco_cli_made_dirs *made);
/* Removes the folders synco_cli_mkdirs_noting(path) made, deepest first, each only while empty: rmdir refuses a folder
 * with anything in it, and the first refusal ends the walk (what holds it holds its parents too). */
void synco_cli_unmake_dirs(const char *path, const synco_cli_made_dirs *made);
/* Writes text to path through a temporary file and a rename. */
synco_status synco_cli_write_file_atomic(const char *path, const char *text);
/* The help of --precision, the same in every command. */
#define SYNCO_PRECISION_HELP                                                                                       \
  "fp32; bf16 (convolutions and linear layers in bf16, fp32 accumulation, on a CPU with AVX512-BF16 or AMX, or " \
  "a GPU from compute capability 8.0); tf32 (a GPU's tensor cores for fp32)"
/* --precision of command cmd on --backend `backend`: 0 when this build and machine run it; else prints
 * "synco CMD: reason" and returns 2. */
int synco_cli_precision(const char *cmd, const char *backend, const char *precision);
/* The backend a command runs on: created by name, --precision applied (synco_backend_set_precision), before anything
 * is planned on it. Under an MPI launcher "cuda" is the rank's GPU of its node (synco_backend_rank_name). */
synco_status synco_cli_backend(const char *name, const char *precision, synco_backend **out);
/* Under an MPI launcher with the CUDA backend, the transport of the step's collectives: NCCL on the backend's stream
 * where the build has NCCL and every rank has a GPU of its own (no two ranks on one host share a device), unless a
 * rank's SYNCO_NCCL=0 says otherwise; else MPI through host copies (two ranks on one GPU, which NCCL refuses: the
 * lent test machine). Every rank calls it (a collective); on success *dist may be the NCCL seam, which owns the MPI one.
 * NCCL that does not start on every rank leaves MPI on all, said in *note: what runs and why ("" where nothing was
 * chosen: one process, or another backend), for rank 0 to print. */
synco_status synco_cli_gpu_transport(synco_dist **dist, synco_backend *be, char *note, size_t n);

/* "synco.preprocess" metadata of exported models (JSON, at most n bytes): what an image needs before the encoder
 * sees it, exactly as synco's evaluation transform does: RGB in [0, 1]; when it is not image_size x image_size,
 * the shorter side resized to `resize` = int(image_size / 0.875) (PIL bilinear, antialiased) and a center crop
 * of image_size; then Normalize(mean, std) (synco_cli_norm_stats); NCHW float32. */
void synco_cli_preprocess_json(char *out, size_t n, int image_size);

/* The bundled demo images' folder `sub` ("train" or "val"): ./data/cifar10-small/SUB when it exists, else
 * PREFIX/share/synco/cifar10-small/SUB (installed) or PREFIX/data/cifar10-small/SUB (a build tree), PREFIX being
 * the folder above the program's own (/proc/self/exe); NULL when none exists. Two results stay valid at once. */
const char *synco_cli_bundled_data(const char *sub);
/* A file (dir = 0: readable) or folder (dir = 1) the project ships, into out (cap bytes): in_tree under the working
 * folder (the source tree), else PREFIX/share/synco/installed (installed), else PREFIX/in_tree (a build tree), PREFIX
 * being the folder above the program's own (/proc/self/exe). 0 when none is there. */
int synco_cli_shipped(const char *in_tree, const char *installed, int dir, char *out, size_t cap);

/* Creates a new run directory (its parents as with mkdir -p), never one that exists: on EEXIST path (of capacity
 * cap) gets a suffix -2, -3, ... so two runs started in the same second get two directories. */
synco_status synco_cli_mkdir_unique(char *path, size_t cap);
/* Does dir hold a run (config.json, log.jsonl, last.safetensors or checkpoint_NNNN.safetensors)? */
int synco_cli_run_dir_holds_run(const char *dir);
/* The name of dir's checkpoint_NNNN.safetensors of the highest number into name (cap bytes): 1, or 0 when it has
 * none. */
int synco_cli_newest_numbered_checkpoint(const char *dir, char *name, size_t cap);
/* Removes the stale temporary files of a run directory (<run file>.tmp, left by a kill), and with run_files also
 * the run files themselves (a fresh run with --force). Call with the lock held. Returns the number removed. */
int synco_cli_run_dir_clean(const char *dir, int run_files);
/* --force never removes the earlier run before the new run has a checkpoint: its run files are set aside in
 * DIR/.replaced-run (call with the lock held; returns how many, or -1 with the error recorded, nothing moved),
 * removed at the new run's first checkpoint (drop_aside: returns how many), or put back (put_back: the new run's
 * files are removed first; returns how many, or -1). */
int synco_cli_run_dir_set_aside(const char *dir);
int synco_cli_run_dir_drop_aside(const char *dir);
int synco_cli_run_dir_put_back(const char *dir);
/* A DIR/.replaced-run left by a --force run that was killed: with DIR not in use (locked: the caller holds its
 * lock), it is removed when DIR has a last.safetensors (the new run saved one), else put back; prints what it did
 * ("synco CMD: DIR: ..."). 0, or -1 with the error recorded. */
int synco_cli_run_dir_recover(const char *cmd, const char *dir, int locked);
/* Takes the advisory lock DIR/.lock (flock, held until unlock or exit); another holder is refused with
 * "DIR is in use by another synco run (pid N)". A .lock that is a link or not a regular file is refused; one with
 * other names (a copy made with cp -al) is replaced by a lock file of DIR's own. */
synco_status synco_cli_run_dir_lock(const char *dir, int *fd);
void synco_cli_run_dir_unlock(int fd);
/* SYNCO_OK unless DIR exists and another synco run holds its lock (the error as synco_cli_run_dir_lock's): for the
 * checks that come before a run takes the lock, so that their advice is not for a folder a running run owns. */
synco_status synco_cli_run_dir_check_free(const char *dir);
/* Keeps the rows of a log.jsonl that a run stopped after global step `step`, epoch `epoch` had written: rows of
 * kind "epoch" and "knn" whose epoch is at most epoch, the others whose "step" is at most step (rows without one
 * count as 0; torn rows are dropped), rewriting the file atomically when any row goes or when it has other names
 * (hard links: the rows appended next are this run's alone); *dropped = rows removed. A missing file is fine; a
 * link or a FIFO is not. */
synco_status synco_cli_log_truncate(const char *path, long step, int epoch, int *dropped);
/* Do both paths exist and name the same file (st_dev, st_ino)? */
int synco_cli_same_file(const char *a, const char *b);

/* The longest output path (a file, or a run or output folder) synco takes, in characters: every name it makes
 * from one (FILE.tmp, a checkpoint's, an embedding's .files.txt, an analysis plot) fits its buffers. */
#define SYNCO_CLI_PATH_MAX 1000
/* A file a command reads (SYNCO_CLI_IN; SYNCO_CLI_IN_DATA: images, a folder whose every file may be read) or writes
 * (a file; a folder it writes files into; a file it names after another output, whose length that output's check
 * covers), named by its flag. */
typedef enum { SYNCO_CLI_IN, SYNCO_CLI_IN_DATA, SYNCO_CLI_OUT, SYNCO_CLI_OUT_DIR, SYNCO_CLI_OUT_BESIDE } synco_cli_file_kind;
typedef struct {
  const char *flag, *path; /* path NULL: not given (skipped) */
  synco_cli_file_kind kind;
} synco_cli_file;
/* The one check of a command's outputs, before anything is read or written: an output that is an input, or
 * another output, or the same file as one (another name, a link: st_dev/st_ino; for one not there yet, its
 * folder's real path and its name) is refused ("synco CMD: --out X is the --ckpt file itself; give another output
 * file"), and so are an output inside a SYNCO_CLI_IN_DATA folder (it would be read as images of that folder next
 * time: a training image overwritten, a run folder taken for a class), an output file that is a run's own file (a
 * folder with config.json or log.jsonl: its last.safetensors, checkpoint_NNNN.safetensors, log.jsonl, config.json or
 * event file), and an empty output path or one longer than SYNCO_CLI_PATH_MAX (naming its length). Returns 0, or 2
 * after printing the one-line reason. */
int synco_cli_check_files(const char *cmd, const synco_cli_file *files, size_t n);
/* synco_cli_check_files(cmd, files...) of a list written in place:
 *   SYNCO_CLI_CHECK_FILES("embed", {"--out", out, SYNCO_CLI_OUT}, {"--ckpt", mo.ckpt}, {"--data", data}) */
#define SYNCO_CLI_CHECK_FILES(cmd, ...)                                                                            \
  synco_cli_check_files(cmd, (const synco_cli_file[]){__VA_ARGS__},                                                \
                        sizeof((const synco_cli_file[]){__VA_ARGS__}) / sizeof(synco_cli_file))
/* A checkpoint given as a run folder (--ckpt RUN_DIR) is the run's last.safetensors, as --resume takes a folder:
 * returns the file to read (given itself when it is no folder; else buf, of capacity cap), or NULL with the error
 * recorded ("--ckpt DIR: the folder holds no last.safetensors"). */
const char *synco_cli_ckpt_path(const char *flag, const char *given, char *buf, size_t cap);
/* The command running (main sets it): the name messages of shared code put after "synco ". */
extern const char *synco_cli_command;
/* Prints a dataset's skipped-image count and its warnings (one "synco CMD: warning: ..." line each; cmd NULL: the
 * running command's, synco_cli_command). */
void synco_cli_dataset_notes(const char *cmd, const synco_dataset *ds);

/* --threads N (0: OpenMP's default, all cores) for command cmd: sets OpenMP's thread count and returns the count in
 * force. More threads than the cores this process may use get a one-line warning (each thread then waits for the
 * others' time slices: many times slower); `from` names where N came from when no flag gave it ("the run's", for a
 * resumed run that keeps its own), else NULL. */
int synco_cli_set_threads(const char *cmd, int threads, const char *from);

/* --adapt-threads, after each step of m (step_s: its compute seconds): the governor's thread count
 * (base/thread_governor.h) set with omp_set_num_threads, and both encoders planned again where it changed. *note:
 * the governor's line when a switch was kept, else NULL. */
synco_status synco_cli_adapt_threads(synco_thread_governor *g, synco_moco *m, double step_s, const char **note);

#endif
