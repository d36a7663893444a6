/* synco pretrain's setup, between a validated config and the first step: the data and the crop size it asks for,
 * the memory check, the loader, the model (from --init's weights or --resume's checkpoint), the kNN monitor's
 * data, and last the run directory. Nothing is written before the run directory is opened. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/registry.h"
#include "base/status.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/memplan.h"
#include "cli/pretrain.h"
#include "dist/dist.h"
#include "io/safetensors.h"
#include "nn/encoder_weights.h"
#include "optim/schedule.h"

/* The crop size follows the data and the stem unless --image-size is given: 32 with the CIFAR stem, else the
 * images' own size when they are small (224 px crops of them would upscale more than 2x). Warns when a run
 * upscales its images more than 2x. `first` is the dataset's first image. Every size it picks is one the
 * validator accepts (32, or a side of at least 8). */
static void choose_image_size(pretrain_opts *o, const synco_arg *args, const synco_image *first) {
  const int side = first->w < first->h ? first->w : first->h;
  if (!synco_args_seen(args, "image-size")) {
    if (o->cifar_stem) o->image_size = 32;
    else if (side >= 8 && 2 * side < o->image_size) o->image_size = side;
  }
  if (side > 0 && o->image_size > 2 * side) {
    char advice[96] = ""; /* what would crop them at their own size, where a crop can be that small (8 px) */
    if (side >= 8)
      snprintf(advice, sizeof advice, "; pass --image-size %d%s for small images", side, o->cifar_stem ? "" : " (and --cifar-stem)");
    else if (o->image_size > 8)
      snprintf(advice, sizeof advice, "; the smallest crop is 8 px (--image-size 8)");
    fprintf(stderr, "synco pretrain: upscaling %dx%d images to %d px crops%s\n", first->w, first->h, o->image_size, advice);
  }
}

int pretrain_init_arch(pretrain_ctx *c) {
  pretrain_opts *o = &c->o;
  if (!o->init || o->resume) return PRETRAIN_GO;
  synco_safetensors st;
  synco_encoder_config f;
  int size = 0;
  if (synco_st_open(&st, o->init) != SYNCO_OK) return synco_cli_error("pretrain");
  const int from_meta = synco_st_meta(&st, "synco.encoder") != NULL;
  const synco_status s = synco_weights_read_config_st(&st, &f, &size);
  synco_st_close(&st);
  if (s != SYNCO_OK) return synco_cli_error("pretrain");
  char what[160];
  snprintf(what, sizeof what, "a resnet%d, width %d, %s stem%s (%s)", f.depth, f.width,
           f.cifar_stem ? "CIFAR" : "ImageNet", f.head ? ", with a projection head" : "",
           from_meta ? "its synco.encoder metadata" : "from its tensors' shapes");
  const int dim = f.head ? f.dim : o->moco_dim;
  char arch[16];
  snprintf(arch, sizeof arch, "resnet%d", f.depth);
  /* flag, does the run's value differ from the file's, the value given */
  struct { const char *flag; int differs; char given[48]; } row[4] = {
      {"arch", strcmp(o->arch, arch) != 0, ""}, {"width", o->width != f.width, ""},
      {"cifar-stem", o->cifar_stem != f.cifar_stem, ""}, {"moco-dim", o->moco_dim != dim, ""}};
  snprintf(row[0].given, sizeof row[0].given, "--arch %s", o->arch);
  snprintf(row[1].given, sizeof row[1].given, "--width %d", o->width);
  snprintf(row[2].given, sizeof row[2].given, "%s", o->cifar_stem ? "--cifar-stem" : "--no-cifar-stem");
  snprintf(row[3].given, sizeof row[3].given, "--moco-dim %d", o->moco_dim);
  int bad = 0, taken = 0;
  for (int i = 0; i < 4; i++) {
    if (!row[i].differs) continue;
    const int from_config = pretrain_config_from_file(c, row[i].flag); /* --config FILE's: given too */
    if (synco_args_seen(c->args, row[i].flag) || from_config) {
      synco_arg_problem(&c->problems, "%s%s does not fit --init %s, %s: drop %s%s to train the file's", row[i].given,
                        from_config ? " (--config's)" : "", o->init, what, row[i].given,
                        from_config ? " from the --config file" : "");
      bad = 1;
    } else {
      taken = 1;
    }
  }
  if (bad || !taken) return PRETRAIN_GO;
  o->arch = f.depth == 18 ? "resnet18" : f.depth == 34 ? "resnet34" : "resnet50";
  o->width = f.width;
  o->cifar_stem = f.cifar_stem;
  o->moco_dim = dim;
  if (c->rank == 0) fprintf(stderr, "synco pretrain: --init %s is %s: training that\n", o->init, what);
  return PRETRAIN_GO;
}

/* Defaults that fit nothing, said before the first step of a new run (a resumed run heard them when it started):
 * the ImageNet stem (a 7x7 stride-2 convolution and a max-pool) on images of at most 64 px, and a queue of at least
 * as many keys as there are images (each image's own older keys among its negatives). */
static void warn_misfits(const pretrain_ctx *c, const synco_image *first) {
  const pretrain_opts *o = &c->o;
  const int side = first->w < first->h ? first->w : first->h;
  if (side > 0 && side <= 64 && !o->cifar_stem)
    fprintf(stderr, "synco pretrain: %dx%d images with the ImageNet stem (7x7 stride-2 conv and max-pool: %d px crops "
                    "are %dx%d after layer4); pass --cifar-stem, or --recipe cifar (MoCo's CIFAR recipe), for small "
                    "images\n", first->w, first->h, o->image_size, (o->image_size + 31) / 32, (o->image_size + 31) / 32);
  const size_t n = synco_dataset_size(c->train);
  if (n > 0 && (size_t)o->moco_k >= n) {
    char hint[96] = "";
    const long fit = (long)(n / 2) / o->batch * o->batch; /* a multiple of -b, half the images */
    if (fit >= o->batch) snprintf(hint, sizeof hint, " (e.g. --moco-k %ld, a multiple of -b %d)", fit, o->batch);
    fprintf(stderr, "synco pretrain: --moco-k %d is at least the %zu images: the queue holds each image's key more "
                    "than once, a query's own image among its negatives; pass a --moco-k below %zu%s%s\n", o->moco_k,
            n, n, hint, synco_args_seen(c->args, "moco-k") || !strcmp(o->recipe, "cifar") ? "" : " or --recipe cifar");
  }
}

/* The run's backend, once (0; else the error's exit code): with --adapt-threads its sums are fixed for the run's
 * thread count, so that the governor's changes of the count change no result (synco_backend_fixed_sums). */
static int make_backend(pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  if (c->be) return 0;
  if (synco_cli_backend(o->backend, o->precision, &c->be) != SYNCO_OK ||
      synco_backend_fixed_sums(c->be, o->adapt_threads ? o->threads : 0) != SYNCO_OK)
    return synco_cli_error("pretrain");
  return 0;
}

/* Refuses (returns 2) a run whose planned memory exceeds what the machine has, before anything big exists. The
 * run's backend is made first (nothing planned or allocated on it yet), so that it says what its plans take. */
static int check_memory(pretrain_ctx *c, const synco_image *first) {
  const pretrain_opts *o = &c->o;
  if (!o->memory_check) return 0;
  const int brc = make_backend(c);
  if (brc) return brc;
  /* the loader's slots: max(prefetch 3, workers) + 1 (synco_loader_create) */
  const int workers = o->workers > 0 ? o->workers : (int)sysconf(_SC_NPROCESSORS_ONLN); /* as the loader counts 0 */
  const int slots = (workers > 3 ? workers : 3) + 1;
  synco_aug_config aug = {.kind = o->aug_plus ? SYNCO_AUG_MOCO_V2 : SYNCO_AUG_MOCO_V1, .size = o->image_size, .blur = o->blur};
  const size_t scratch = first->w > 0 ? synco_augment_scratch_bytes(first->w, first->h, &aug) : 0;
  synco_mem_plan p;
  if (synco_mem_plan_moco(c->be, &c->cfg.moco, slots, workers, scratch, &p) != SYNCO_OK)
    return 0; /* creation reports it */
  return synco_mem_refuse("pretrain", &p, o->batch, o->image_size,
                          strcmp(o->recipe, "cifar") ? "Use a smaller -b, --image-size, or --recipe cifar (or --no-memory-check)."
                                                     : "Use a smaller -b, --image-size or --moco-k (or --no-memory-check).");
}

/* The training data and the crop size. */
static int open_data(pretrain_ctx *c) {
  pretrain_opts *o = &c->o;
  c->dopt = (synco_dataset_options){.split = o->split, .skip_bad = o->skip_bad, .store = SYNCO_STORE_AUTO,
                                    .threads = o->threads};
  if (synco_dataset_open(&c->train, o->data, &c->dopt) != SYNCO_OK) return synco_cli_error("pretrain");
  synco_cli_dataset_notes("pretrain", c->train);
  synco_image first = {0};
  if (synco_dataset_size(c->train) > 0 && synco_dataset_get(c->train, 0, &first) != SYNCO_OK) first.w = first.h = 0;
  /* a resumed run keeps its checkpoint's crop, --config its file's */
  if (!o->resume && !pretrain_config_from_file(c, "image-size")) choose_image_size(o, c->args, &first);
  if (!o->resume && c->rank == 0) warn_misfits(c, &first);
  c->cfg.moco.image_size = o->image_size;
  c->first_w = first.w;
  c->first_h = first.h;
  synco_image_free(&first);
  return PRETRAIN_GO;
}

/* What every rank must share before the first collective: the resolved settings and the training data. */
static int same_on_every_rank(pretrain_ctx *c) {
  if (c->world <= 1) return PRETRAIN_GO;
  char *set = pretrain_settings_text(&c->o), *data = c->train ? pretrain_data_text(c->train, "--data") : NULL;
  char *all = set && data ? malloc(strlen(set) + strlen(data) + 1) : NULL;
  if (all) strcat(strcpy(all, set), data);
  free(set);
  free(data);
  if (!all) {
    fprintf(stderr, "synco pretrain: rank %d: out of memory\n", c->rank);
    synco_dist_abort(c->dist, 1);
    return 1;
  }
  const int rc = pretrain_ranks_same(c, all);
  free(all);
  return rc;
}

/* The loader's key order (--key-shuffle indices): the step's, as synco_moco_step_shuffled will take it. Every epoch
 * from start_epoch has c->steps steps, so batch `step` of epoch `epoch` is global step gstep_first + ... (called from
 * the loader's threads: it reads values fixed before the first epoch starts). */
static void key_order(void *ctx, int epoch, int step, int pass, uint32_t *perm) {
  const pretrain_ctx *c = (const pretrain_ctx *)ctx;
  const long gstep = c->gstep_first + (long)(epoch - c->start_epoch) * c->steps + step;
  synco_moco_key_order(c->cfg.moco.seed, (uint64_t)gstep, pass, c->cfg.moco.batch * c->world, perm);
}

/* Under an MPI launcher with the CUDA backend: NCCL where every rank has a GPU of its own (synco_cli_gpu_transport;
 * a collective, so its stage begins after the backend's own, agreed). */
static int choose_transport(pretrain_ctx *c) {
  if (c->world <= 1) return PRETRAIN_GO;
  char note[320];
  if (synco_cli_gpu_transport(&c->dist, c->be, note, sizeof note) != SYNCO_OK) return synco_cli_error("pretrain");
  c->cfg.moco.dist = c->dist;
  if (note[0] && c->rank == 0) printf("%s\n", note);
  return PRETRAIN_GO;
}

/* The memory check and the loader. */
static int open_loader(pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  const synco_image first = {.w = c->first_w, .h = c->first_h};
  const int rc = check_memory(c, &first);
  if (rc) return rc;
  synco_cli_norm_stats(o->image_size, c->mean, c->std);
  synco_loader_config lc = {.batch = o->batch, .views = 2, .threads = o->workers, .prefetch = 3, .shuffle = 1,
                            .drop_last = 1, .seed = (uint64_t)o->seed, .rank = c->rank, .world = c->world};
  lc.batch = c->cfg.moco.batch; /* this process's block of each global batch */
  if (c->cfg.moco.keys_preshuffled) { /* the key images come shuffled; the own ones only as queries */
    lc.key_passes = c->cfg.moco.symmetric ? 2 : 1;
    lc.views = c->cfg.moco.symmetric ? 2 : 1;
    lc.key_order = key_order;
    lc.key_ctx = c;
  }
  lc.aug.kind = o->aug_plus ? SYNCO_AUG_MOCO_V2 : SYNCO_AUG_MOCO_V1;
  lc.aug.size = o->image_size;
  lc.aug.blur = o->blur;
  memcpy(lc.aug.mean, c->mean, sizeof c->mean);
  memcpy(lc.aug.std, c->std, sizeof c->std);
  if (synco_loader_create(&c->loader, c->train, &lc) != SYNCO_OK) return synco_cli_error("pretrain");
  c->steps = synco_loader_steps_per_epoch(c->loader);
  if (c->steps < 1) {
    fprintf(stderr, "synco pretrain: %s has %zu images, fewer than one batch of %d\n", o->data,
            synco_dataset_size(c->train), o->batch);
    return 1;
  }
  return PRETRAIN_GO;
}

/* A resumed run given another --epochs: its cosine schedule follows the new length unless --schedule-epochs keeps
 * it; the rate of the next epoch jumps, which is said here, with the flag that keeps the run's schedule. */
static void say_schedule_change(const pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  if (!c->resume_epochs || !o->cos || synco_args_seen(c->args, "schedule-epochs")) return;
  synco_lr_schedule was = c->cfg.sched;
  was.epochs = c->resume_schedule_epochs > 0 ? c->resume_schedule_epochs : c->resume_epochs;
  if (was.epochs == c->cfg.sched.epochs) return;
  const int e = c->start_epoch;
  fprintf(stderr, "synco pretrain: --epochs %d (the run had %d) %s its cosine learning-rate schedule to %d epochs: epoch "
                  "%d trains at lr %.4g, where the run's schedule gives %.4g; --schedule-epochs %d keeps the run's "
                  "schedule (the epochs past its end keep its last rate)\n",
          o->epochs, c->resume_epochs, c->cfg.sched.epochs > was.epochs ? "stretches" : "shrinks", c->cfg.sched.epochs,
          e + 1, synco_lr_epoch(&c->cfg.sched, e), synco_lr_epoch(&was, e), was.epochs);
}

/* The backend (unless the memory check made it) and the model, from --init's weights or --resume's checkpoint; the
 * epochs left to train. */
static int build_model(pretrain_ctx *c) {
  const pretrain_opts *o = &c->o;
  const int brc = make_backend(c);
  if (brc) return brc;
  if (synco_moco_create(&c->moco, c->be, &c->cfg.moco) != SYNCO_OK) return synco_cli_error("pretrain");
  const int prc = pretrain_probe_open(c); /* before --resume: the checkpoint holds its state */
  if (prc != PRETRAIN_GO) return prc;
  c->start_epoch = 0;
  c->gstep = 0;
  if (o->init && !o->resume) {
    char report[1024];
    synco_encoder *eq = synco_moco_query(c->moco), *ek = synco_moco_key(c->moco);
    if (synco_weights_load_report(eq, o->init, report, sizeof report) != SYNCO_OK) return synco_cli_error("pretrain");
    /* The key encoder starts as a copy of the query encoder, as at random init. */
    if (c->be->copy(c->be, synco_encoder_params(ek), synco_encoder_params(eq),
                    synco_encoder_num_params(eq) * sizeof(float), SYNCO_COPY_D2D) != SYNCO_OK ||
        c->be->copy(c->be, synco_encoder_buffers(ek), synco_encoder_buffers(eq),
                    synco_encoder_num_buffers(eq) * sizeof(float), SYNCO_COPY_D2D) != SYNCO_OK)
      return synco_cli_error("pretrain");
    if (c->rank == 0) fprintf(stderr, "initialized from %s%s%s\n", o->init, report[0] ? ": " : "", report);
  }
  if (o->resume) {
    if (synco_moco_load(c->moco, o->resume, &c->start_epoch, &c->gstep) != SYNCO_OK) return synco_cli_error("pretrain");
    if (c->start_epoch < 0 || c->gstep < 0) {
      fprintf(stderr, "synco pretrain: %s: epoch %d, step %ld: a damaged checkpoint (both must be at least 0)\n",
              o->resume, c->start_epoch, c->gstep);
      return 1;
    }
    if (c->rank == 0) fprintf(stderr, "resumed from %s at epoch %d (step %ld)\n", o->resume, c->start_epoch, c->gstep);
    if (c->probe.layer && synco_moco_extra_loaded(c->moco)) c->probe.layer->steps = 1; /* its momentum is in use */
    else if (c->probe.layer && c->rank == 0)
      fprintf(stderr, "%s holds no online probe (it ran with --no-probe or before there was one): the probe starts "
                      "afresh\n", o->resume);
  }
  c->end_epoch = o->stop_epoch > 0 && o->stop_epoch < o->epochs ? o->stop_epoch : o->epochs;
  if (o->resume && c->start_epoch >= c->end_epoch) { /* nothing to train: leave the run directory as it is */
    if (c->start_epoch < o->epochs) /* --stop-epoch is what stops it */
      printf("%s has done %d of %d epoch%s, and --stop-epoch %d is not past that: nothing to train (a --stop-epoch "
             "above %d, or none, continues it)\n", o->resume, c->start_epoch, o->epochs, synco_cli_s(o->epochs),
             o->stop_epoch, c->start_epoch);
    else
      printf("%s has done %d of %d epoch%s: nothing to train (--epochs N above %d continues it)\n", o->resume,
             c->start_epoch, o->epochs, synco_cli_s(o->epochs), c->start_epoch);
    return 0;
  }
  if (o->resume && c->rank == 0) say_schedule_change(c); /* said only of a run that trains on */
  return PRETRAIN_GO;
}

int pretrain_setup(pretrain_ctx *c) {
  /* Rank 0 alone owns the run directory and the kNN monitor; every stage ends with the ranks agreeing. */
  const int writer = c->rank == 0;
  int rc = pretrain_agree(c, writer ? pretrain_run_dir_choose(c) : PRETRAIN_GO);
  if (rc == PRETRAIN_GO) rc = pretrain_agree(c, open_data(c));
  if (rc == PRETRAIN_GO) rc = same_on_every_rank(c); /* before any collective whose size follows them */
  if (rc == PRETRAIN_GO) rc = pretrain_agree(c, open_loader(c));
  if (rc == PRETRAIN_GO) { /* make_backend: 0 when made */
    const int brc = make_backend(c);
    rc = pretrain_agree(c, brc ? brc : PRETRAIN_GO);
  }
  if (rc == PRETRAIN_GO) rc = pretrain_agree(c, choose_transport(c));
  if (rc == PRETRAIN_GO) rc = pretrain_agree(c, build_model(c));
  if (rc == PRETRAIN_GO && c->world > 1) { /* each rank read its own checkpoint: the same epoch and step */
    char text[96];
    snprintf(text, sizeof text, "--resume's epoch\t%d\n--resume's step\t%ld\n", c->start_epoch, c->gstep);
    rc = pretrain_ranks_same(c, text);
  }
  if (rc == PRETRAIN_GO) rc = pretrain_agree(c, writer ? pretrain_knn_open(c) : PRETRAIN_GO);
  /* the run directory: nothing in it changes until every check above has passed */
  if (rc == PRETRAIN_GO) rc = pretrain_agree(c, writer ? pretrain_run_dir_open(c) : PRETRAIN_GO);
  return rc;
}
