/* synco pretrain: self-supervised pretraining with SynCo / MoCHI / MoCo-v2.
 * Flags follow the authors' main_synco.py. The run directory gets config.json (every setting, resolved),
 * log.jsonl (one object per logging interval and per epoch), last.safetensors and checkpoint_NNNN.safetensors.
 * A run directory is never damaged: it is touched only after every check has passed, under a lock, and a fresh
 * run does not replace a run without --force; --resume takes the run's settings from its checkpoint.
 * With no --data it trains a small configuration on the dataset bundled under data/ and reports the kNN
 * accuracy of the encoder before and after.
 *
 * This file holds the command's first two stages, parse and config, and the sequence of all four (pretrain.h
 * says which file holds which). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/pretrain.h"
#include "dist/dist.h"
#include "ssl/negatives.h"
#include "ssl/pretrain_config.h"

/* ---- parse: argv -> options --------------------------------------------------------------------------------- */

static const pretrain_opts DEFAULTS = {
    .arch = "resnet50", .data = NULL, .val = NULL, .out = NULL, .resume = NULL, .method = "synco",
    .recipe = "imagenet", .split = "train", .backend = "auto", .precision = "fp32", .key_shuffle = "images",
    .epochs = 200, .batch = 256, .moco_dim = 128, .moco_k = 65536, .mlp = 1, .aug_plus = 1, .cos = 1,
    .n_hard = 1024, .n = {256, 256, 256, 64, 64, 64}, .warmup_epochs = 10, .cifar_stem = 0, .width = 64,
    .image_size = 224, .bn_splits = 8, .symmetric = 0, .threads = 0, .workers = 2, .save_every = 10,
    .knn_every = 0, .knn_k = 200, .print_freq = 10, .blur = 1, .skip_bad = 0, .seed = 0,
    .lr = 0.03, .wd = 1e-4, .momentum = 0.9, .moco_m = 0.999, .moco_t = 0.2, .sigma = 0.01, .delta = 0.01,
    .eta = 0.01, .knn_t = 0.1, .lr_warmup_epochs = 0, .schedule = {0, {0}}, .memory_check = 1,
    .probe = 1, .probe_lr = 0.1, .bucket_mb = SYNCO_MOCO_BUCKET_MB, .tensorboard = 1, .adapt_threads = 1,
};

static const char SUMMARY[] =
    "Self-supervised pretraining of a ResNet encoder with SynCo (MoCo-v2 + six kinds of synthetic hard negatives),\n"
    "MoCHI or plain MoCo-v2. Defaults are the authors' ImageNet recipe; --recipe cifar switches the defaults of the\n"
    "flags you do not give to MoCo's CIFAR recipe. With no --data: trains a small ResNet-18 on the images bundled\n"
    "under data/ and prints the kNN accuracy of the untrained and the trained encoder. Started by mpirun -np N (or\n"
    "srun), it trains data-parallel: -b is the global batch, each process takes b/N, rank 0 writes the run directory.\n"
    "Results are bit-identical for the same seed, settings and --threads on the same kind of CPU (unless\n"
    "SYNCO_CONV_ALGO=auto times the kernels in each process); --resume keeps the run's settings, threads included.\n"
    "Other kernels or thread counts round differently: the losses agree to about 6 digits at first, then drift apart.";

/* --method's synthetic counts --n1..--n6, before they follow the queue (synco_negatives_scale_defaults). */
static void method_preset(const char *method, int preset[6]) {
  static const int synco[6] = {256, 256, 256, 64, 64, 64};
  static const int mochi[6] = {256, 0, 256, 0, 0, 0}; /* MoCHI: s' (query mixing) = type 1, s (pair mixing) = type 3 */
  if (!strcmp(method, "synco")) memcpy(preset, synco, sizeof synco);
  else if (!strcmp(method, "mochi")) memcpy(preset, mochi, sizeof mochi);
  else memset(preset, 0, 6 * sizeof *preset);
}

static void apply_method(pretrain_opts *o, synco_arg *args) {
  static const char *names[6] = {"n1", "n2", "n3", "n4", "n5", "n6"};
  int preset[6];
  method_preset(o->method, preset);
  for (int t = 0; t < 6; t++)
    if (!synco_args_seen(args, names[t])) o->n[t] = preset[t];
}

/* Defaults of flags the user did not give, for MoCo's CIFAR recipe. */
static void apply_cifar_recipe(pretrain_opts *o, synco_arg *args) {
#define DEF(flag, field, value) if (!synco_args_seen(args, flag)) o->field = value
  DEF("arch", arch, "resnet18");
  DEF("cifar-stem", cifar_stem, 1);
  DEF("image-size", image_size, 32);
  DEF("batch-size", batch, 512);
  DEF("lr", lr, 0.06);
  DEF("wd", wd, 5e-4);
  DEF("moco-k", moco_k, 4096);
  DEF("moco-m", moco_m, 0.99);
  DEF("moco-t", moco_t, 0.1);
  DEF("bn-splits", bn_splits, 8);
  DEF("blur", blur, 0);
#undef DEF
}

/* The bundled small job: ResNet-18 at width 16 with the CIFAR stem, twelve epochs on the 5,000 bundled images
 * (synthetic negatives from the third), kNN before and after: under four minutes on 2 cores. */
static void apply_demo(pretrain_opts *o, synco_arg *args) {
#define DEF(flag, field, value) if (!synco_args_seen(args, flag)) o->field = value
  DEF("data", data, synco_cli_bundled_data("train"));
  DEF("val", val, synco_cli_bundled_data("val"));
  DEF("out", out, "runs/demo");
  if (synco_args_seen(args, "recipe")) { /* the bundled images under the recipe asked for, at its own length */
    DEF("knn-every", knn_every, o->epochs);
    return;
  }
  DEF("width", width, 16);
  DEF("batch-size", batch, 128);
  DEF("moco-k", moco_k, 4096);
  DEF("epochs", epochs, 12);
  DEF("warmup-epochs", warmup_epochs, 2);
  DEF("knn-every", knn_every, o->epochs);
  DEF("save-every", save_every, 0);
#undef DEF
}

static int parse_arch(const char *arch, int *depth) { return (*depth = pretrain_arch_depth(arch)) != 0; }

/* The flag table: each row points at its option in c->o, whose value before parsing is the default --help shows. */
static void flag_table(pretrain_ctx *c) {
  pretrain_opts *o = &c->o;
  const synco_arg rows[] = {
      {"data", 0, SYNCO_ARG_STR, &o->data, "training images: a folder tree (class folders, or unlabelled images), CIFAR, STL-10, idx; none = bundled data/"},
      {"val", 0, SYNCO_ARG_STR, &o->val, "labelled images for the kNN monitor (--knn-every; --data must be labelled too)"},
      {"split", 0, SYNCO_ARG_STR, &o->split, "split of --data for formats holding several (train, test, unlabeled)"},
      {"skip-bad", 0, SYNCO_ARG_FLAG, &o->skip_bad, "skip unreadable images of an ImageFolder (and count them)"},
      {"out", 0, SYNCO_ARG_STR, &o->out, "run directory (default runs/<date-time>)"},
      {"recipe", 0, SYNCO_ARG_STR, &o->recipe, "defaults for unset flags: imagenet (authors') or cifar (MoCo's CIFAR demo)"},
      {"arch", 'a', SYNCO_ARG_STR, &o->arch, "resnet18, resnet34 or resnet50"},
      {"width", 0, SYNCO_ARG_INT, &o->width, "base width of the ResNet (torchvision: 64)"},
      {"cifar-stem", 0, SYNCO_ARG_FLAG, &o->cifar_stem, "3x3 stride-1 first conv and no max-pool (small images)"},
      {"image-size", 0, SYNCO_ARG_INT, &o->image_size, "crop size of the augmented views (unset: 32 with --cifar-stem, the images' own size when they are small, else 224)"},
      {"epochs", 0, SYNCO_ARG_INT, &o->epochs, "number of epochs"},
      {"batch-size", 'b', SYNCO_ARG_INT, &o->batch, "images per step (under mpirun: of all processes together)"},
      {"lr", 0, SYNCO_ARG_FLOAT, &o->lr, "initial learning rate"},
      {"wd", 0, SYNCO_ARG_FLOAT, &o->wd, "weight decay (all parameters)"},
      {"momentum", 0, SYNCO_ARG_FLOAT, &o->momentum, "SGD momentum"},
      {"cos", 0, SYNCO_ARG_FLAG, &o->cos, "cosine learning-rate schedule by epoch (--no-cos: step schedule)"},
      {"schedule", 0, SYNCO_ARG_INTLIST, &o->schedule, "with --no-cos: epochs at which lr is multiplied by 0.1"},
      {"lr-warmup-epochs", 0, SYNCO_ARG_INT, &o->lr_warmup_epochs, "linear learning-rate warm-up (epochs, per step)"},
      {"schedule-epochs", 0, SYNCO_ARG_INT, &o->schedule_epochs, "length of the cosine learning-rate schedule in epochs (0: --epochs); epochs past it keep its last rate. "
       "--resume with more --epochs: --schedule-epochs OLD keeps the run's schedule, else it is stretched", SYNCO_ARG_RANGE(0, SYNCO_PRETRAIN_MAX_EPOCHS)},
      {"moco-dim", 0, SYNCO_ARG_INT, &o->moco_dim, "feature dimension of the projection head"},
      {"moco-k", 0, SYNCO_ARG_INT, &o->moco_k, "queue size (a multiple of the batch size)"},
      {"moco-m", 0, SYNCO_ARG_FLOAT, &o->moco_m, "momentum of the key encoder update"},
      {"moco-t", 0, SYNCO_ARG_FLOAT, &o->moco_t, "softmax temperature"},
      {"mlp", 0, SYNCO_ARG_FLAG, &o->mlp, "MLP projection head (MoCo-v2)"},
      {"aug-plus", 0, SYNCO_ARG_FLAG, &o->aug_plus, "MoCo-v2 augmentation (--no-aug-plus: MoCo-v1's)"},
      {"blur", 0, SYNCO_ARG_FLAG, &o->blur, "Gaussian blur in the augmentation (p 0.5)"},
      {"bn-splits", 0, SYNCO_ARG_INT, &o->bn_splits, "Split-BN groups on one process (1 = plain BN)"},
      {"symmetric", 0, SYNCO_ARG_FLAG, &o->symmetric, "symmetric loss (both views as queries)"},
      {"key-shuffle", 0, SYNCO_ARG_STR, &o->key_shuffle, "under mpirun, how the key images reach the process that "
       "encodes them (MoCo's shuffle-BN): images (every process's are gathered) or indices (each process decodes and "
       "augments its shuffled key images itself: no image crosses, a decode more per key image; with --symmetric "
       "both views' too); the same results"},
      {"bucket-mb", 0, SYNCO_ARG_FLOAT, &o->bucket_mb, "under mpirun, the gradient all-reduce in buckets of this many "
       "MB, each started as the backward finishes it (0: one all-reduce after the backward); the same results",
       SYNCO_ARG_RANGE(0, 1e6)},
      {"method", 0, SYNCO_ARG_STR, &o->method, "synco, mochi or moco: presets of --n1..--n6"},
      {"n-hard", 0, SYNCO_ARG_INT, &o->n_hard, "hardest queue negatives the synthetic ones are made from (unset: min(1024, --moco-k/4); unset --nK: at most this)"},
      {"n1", 0, SYNCO_ARG_INT, &o->n[0], "type 1, interpolated: a*q + (1-a)*n, a ~ U(0, 0.5)"},
      {"n2", 0, SYNCO_ARG_INT, &o->n[1], "type 2, extrapolated: q + b*(n - q), b ~ U(1, 1.5)"},
      {"n3", 0, SYNCO_ARG_INT, &o->n[2], "type 3, mixup: g*n_i + (1-g)*n_j, g ~ U(0, 1)"},
      {"n4", 0, SYNCO_ARG_INT, &o->n[3], "type 4, noise-injected: n + N(0, sigma^2)"},
      {"n5", 0, SYNCO_ARG_INT, &o->n[4], "type 5, perturbed: n + delta*q"},
      {"n6", 0, SYNCO_ARG_INT, &o->n[5], "type 6, adversarial: n + eta*sign(q)"},
      {"sigma", 0, SYNCO_ARG_FLOAT, &o->sigma, "noise level of type 4"},
      {"delta", 0, SYNCO_ARG_FLOAT, &o->delta, "step of type 5"},
      {"eta", 0, SYNCO_ARG_FLOAT, &o->eta, "step of type 6"},
      {"warmup-epochs", 0, SYNCO_ARG_INT, &o->warmup_epochs, "epochs without synthetic negatives"},
      {"seed", 0, SYNCO_ARG_INT64, &o->seed, "seed of every random stream"},
      {"config", 0, SYNCO_ARG_STR, &o->config, "settings of a run's config.json (runs/a/config.json: run it again); flags given beside it override it"},
      {"resume", 0, SYNCO_ARG_STR, &o->resume, "continue a run: its folder or checkpoint (bare --resume: --out's run); settings come from the checkpoint"},
      {"force", 0, SYNCO_ARG_FLAG, &c->force, "start afresh in a run directory that holds a run (it is removed once the new run has a checkpoint, put back if it fails before)"},
      {"init", 0, SYNCO_ARG_STR, &o->init, "start from torchvision-named weights (an export, a converted torchvision model); its ResNet for --arch, --width, --cifar-stem not given"},
      {"stop-epoch", 0, SYNCO_ARG_INT, &o->stop_epoch, "stop after this epoch, as if the job ended (resume later; 0 = run all)"},
      {"precision", 0, SYNCO_ARG_STR, &o->precision, SYNCO_PRECISION_HELP},
      {"threads", 0, SYNCO_ARG_INT, &o->threads, "compute threads (0 = all cores; results depend on it, --resume keeps it)"},
      {"workers", 'j', SYNCO_ARG_INT, &o->workers, "data loader threads (0: one per core)"},
      {"adapt-threads", 0, SYNCO_ARG_FLAG, &o->adapt_threads, "fewer compute threads while other processes take cores, all again when they leave (sums fixed for --threads, so results do not depend on when; --no-adapt-threads: off, with oneDNN's own sums, which round otherwise: another run's bits; --resume keeps it)"},
      {"backend", 0, SYNCO_ARG_STR, &o->backend, "auto, cpu (oneDNN and own kernels), ref, strict (a test backend), cuda or cuda:N (alias --device)"},
      {"save-every", 0, SYNCO_ARG_INT, &o->save_every, "keep checkpoint_NNNN every this many epochs (0 = only last)"},
      {"knn-every", 0, SYNCO_ARG_INT, &o->knn_every, "kNN accuracy on --val every this many epochs (0 = never)"},
      {"knn-k", 0, SYNCO_ARG_INT, &o->knn_k, "kNN neighbours"},
      {"knn-t", 0, SYNCO_ARG_FLOAT, &o->knn_t, "kNN temperature"},
      {"print-freq", 'p', SYNCO_ARG_INT, &o->print_freq, "steps per log.jsonl line"},
      {"tensorboard", 0, SYNCO_ARG_FLAG, &o->tensorboard, "TensorBoard event files (scalars) in the run directory, when built with protobuf-c (--no-tensorboard: none)"},
      {"probe", 0, SYNCO_ARG_FLAG, &o->probe, "online linear probe on the query encoder's detached features, when the data has labels (--no-probe: off)"},
      {"probe-lr", 0, SYNCO_ARG_FLOAT, &o->probe_lr, "learning rate of the online probe's SGD (momentum 0.9, constant)", .ranged = 1, .lo_open = 1, .lo = 0, .hi = 1e6},
      {"memory-check", 0, SYNCO_ARG_FLAG, &o->memory_check, "refuse a run planned to need more memory than is free (--no-memory-check: run anyway)"},
      {NULL, 0, 0, NULL, NULL, 0},
  };
  _Static_assert(sizeof rows <= sizeof c->args, "pretrain_ctx.args holds every flag");
  memcpy(c->args, rows, sizeof rows);
}

/* argv -> c->o: the flags (bad values are collected in c->problems, printed with the config's), then the presets
 * of --recipe cifar, of the bundled demo (no --data) and of --method for the flags not given. */
static int parse(pretrain_ctx *c, int argc, char **argv) {
  pretrain_opts *o = &c->o;
  synco_arg *args = c->args;
  /* A bare --resume (last, or before another option) continues the run of --out: it becomes --resume=OUT. */
  const char *out_arg = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--out") && i + 1 < argc) out_arg = argv[i + 1];
    else if (!strncmp(argv[i], "--out=", 6)) out_arg = argv[i] + 6;
  }
  if (out_arg && snprintf(c->bare_resume, sizeof c->bare_resume, "--resume=%s", out_arg) >= (int)sizeof c->bare_resume) {
    fprintf(stderr, "synco pretrain: --out %s: path too long\n", out_arg);
    return 2;
  }
  char **av = malloc(((size_t)argc + 1) * sizeof(char *));
  if (!av) return 1;
  for (int i = 0; i < argc; i++) {
    av[i] = argv[i];
    if (!strcmp(argv[i], "--resume") && (i + 1 == argc || !strncmp(argv[i + 1], "--", 2))) {
      if (!out_arg) {
        fprintf(stderr, "synco pretrain: --resume without a checkpoint needs --out DIR (the run to continue)\n");
        free(av);
        return 2;
      }
      av[i] = c->bare_resume;
    }
  }
  av[argc] = NULL;
  /* Every problem with the flags is collected and printed together (one line each, exit 2). */
  int rc = synco_args_parse_collect("pretrain", SUMMARY, args, argc, av, NULL, 0, NULL, &c->problems);
  free(av);
  if (rc) return rc == 1 ? 0 : 2;
  const int demo = !synco_args_seen(args, "data") && !o->resume && !o->config;
  if (!strcmp(o->recipe, "cifar") || (demo && !synco_args_seen(args, "recipe"))) apply_cifar_recipe(o, args);
  else if (strcmp(o->recipe, "imagenet") != 0)
    synco_arg_problem(&c->problems, "--recipe must be imagenet or cifar, got '%s'", o->recipe);
  if (demo) {
    if (!synco_args_seen(args, "recipe")) o->recipe = "cifar"; /* the demo's defaults are that recipe's (hints then
                                                                   do not suggest it) */
    apply_demo(o, args);
  }
  if (demo && (!o->data || !o->val)) {
    fprintf(stderr, "synco pretrain: no --data given and the bundled demo images are not here (looked for "
                    "./data/cifar10-small and share/synco/cifar10-small beside the program's bin/): pass --data DIR\n");
    return 2;
  }
  if (demo && !synco_args_seen(args, "out")) c->force = 1; /* `make demo` again replaces runs/demo */
  c->adapt_said = synco_args_seen(args, "adapt-threads");
  if (!pretrain_key_shuffle_known(o->key_shuffle))
    synco_arg_problem(&c->problems, "--key-shuffle must be images or indices, got '%s'", o->key_shuffle);
  if (!pretrain_method_known(o->method))
    synco_arg_problem(&c->problems, "--method must be synco, mochi or moco, got '%s'", o->method);
  else
    apply_method(o, args);
  return PRETRAIN_GO;
}

/* ---- config: options + a resumed run's settings -> a validated synco_pretrain_config ------------------------ */

/* The library's config of the run in c->o. depth: of --arch. */
static void library_config(pretrain_ctx *c, int depth) {
  const pretrain_opts *o = &c->o;
  synco_pretrain_config *cfg = &c->cfg;
  synco_moco_config *mc = &cfg->moco;
  memset(cfg, 0, sizeof *cfg);
  mc->enc = (synco_encoder_config){.depth = depth, .width = o->width, .cifar_stem = o->cifar_stem, .head = 1,
                                   .mlp = o->mlp, .dim = o->moco_dim, .bn_splits = o->bn_splits};
  mc->image_size = o->image_size;
  mc->batch = o->batch / c->world; /* per process: -b is the global batch */
  mc->dist = c->dist;
  mc->K = o->moco_k;
  mc->m = (float)o->moco_m;
  mc->T = (float)o->moco_t;
  mc->symmetric = o->symmetric;
  /* with one process Split-BN shuffles the loader's batch on the host: nothing to gather either way */
  mc->keys_preshuffled = c->world > 1 && !strcmp(o->key_shuffle, "indices");
  mc->grad_bucket = synco_moco_bucket_floats(o->bucket_mb);
  mc->neg = (synco_negatives_config){.n_hard = o->n_hard, .sigma = (float)o->sigma, .delta = (float)o->delta,
                                     .eta = (float)o->eta};
  for (int t = 0; t < 6; t++) mc->neg.n[t] = o->n[t];
  mc->momentum = (float)o->momentum;
  mc->wd = (float)o->wd;
  mc->seed = (uint64_t)o->seed;
  cfg->sched = (synco_lr_schedule){.lr = (float)o->lr, .epochs = o->schedule_epochs > 0 ? o->schedule_epochs : o->epochs, .cos = o->cos,
                                   .warmup_epochs = o->lr_warmup_epochs, .n_milestones = o->schedule.n};
  for (int i = 0; i < o->schedule.n && i < SYNCO_MAX_MILESTONES; i++) cfg->sched.milestones[i] = o->schedule.v[i];
  cfg->warmup_epochs = o->warmup_epochs;
}

/* A resumed run whose --precision differs from its checkpoint's continues in the new one (checkpoints are fp32 under
 * every precision); it says so, since its results then differ from an uninterrupted run's. */
static void resume_precision_note(const pretrain_ctx *c) {
  const cJSON *was = c->resume_json ? cJSON_GetObjectItemCaseSensitive(c->resume_json, "precision") : NULL;
  const char *now = c->o.precision ? c->o.precision : "fp32";
  if (c->rank == 0 && cJSON_IsString(was) && strcmp(was->valuestring, now))
    fprintf(stderr, "synco pretrain: %s ran in %s; it continues in %s (--precision %s)\n", c->resume_path,
            was->valuestring, now, now);
}

/* --data, --val and --init resolved (absolute, links followed), as config.json keeps them: a run copied elsewhere
 * still finds its data. One read from a file (--resume's checkpoint, --config's) is said to be so, and a missing one
 * is refused with the flag that overrides it; --val given and missing is refused (not only when the kNN monitor
 * opens it), one from a file that nothing uses is dropped with a note. Problems go to c->problems. */
static void resolve_paths(pretrain_ctx *c) {
  pretrain_opts *o = &c->o;
  struct {
    const char *flag, **path, *what;
    char *buf;
  } p[3] = {{"data", &o->data, "the training images", c->data_abs},
            {"val", &o->val, "the kNN monitor's images", c->val_abs},
            {"init", &o->init, "the initial weights", c->init_abs}};
  for (int i = 0; i < 3; i++) {
    if (!*p[i].path) continue;
    const int from_file = pretrain_config_from_file(c, p[i].flag);
    if (realpath(*p[i].path, p[i].buf)) {
      if (from_file && c->rank == 0) /* rank 0 reports (every rank resolves the same) */
        fprintf(stderr, "%s: %s (%s, from %s; --%s overrides it)\n", p[i].flag, p[i].buf, p[i].what, c->settings_file,
                p[i].flag);
      *p[i].path = p[i].buf;
      continue;
    }
    const int e = errno;
    if (i == 2 && o->resume) continue; /* a resumed run's weights come from its checkpoint */
    if (from_file && i == 1 && o->knn_every == 0) {
      if (c->rank == 0) fprintf(stderr, "val: %s (from %s) is not there; unused without --knn-every, dropped\n", *p[i].path,
              c->settings_file);
      *p[i].path = NULL;
      continue;
    }
    if (from_file)
      synco_arg_problem(&c->problems, "%s: %s %s: %s (%s: the path comes from the run; give --%s PATH where they are "
                        "now)", c->settings_file, p[i].flag, *p[i].path, strerror(e), p[i].what, p[i].flag);
    else
      synco_arg_problem(&c->problems, "--%s %s: %s", p[i].flag, *p[i].path, strerror(e));
  }
}

/* A run resumed in another number of processes: P processes of --bn-splits s normalized the global batch in P·s
 * groups, so --bn-splits P·s/N keeps them on N processes (the same training, to rounding); said either way. */
static void keep_bn_groups(pretrain_ctx *c, const synco_arg *args) {
  pretrain_opts *o = &c->o;
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->resume_json, "processes");
  if (!cJSON_IsNumber(p) || p->valueint < 1 || p->valueint == c->world) return;
  /* the run's own --bn-splits: o->bn_splits is a --bn-splits given anew where there is one */
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(c->resume_json, "bn_splits");
  const int was = p->valueint, splits = cJSON_IsNumber(s) && s->valueint > 0 ? s->valueint : o->bn_splits;
  const int groups = was * splits;
  if (synco_args_seen(args, "bn-splits")) {
    if (o->bn_splits * c->world != groups && c->rank == 0)
      fprintf(stderr, "synco pretrain: the run had %d process%s of --bn-splits %d (%d BN groups); --bn-splits %d on %d "
                      "process%s makes %d\n", was, synco_cli_es(was), splits, groups, o->bn_splits, c->world,
              synco_cli_es(c->world), o->bn_splits * c->world);
    return;
  }
  if (groups % c->world == 0) {
    o->bn_splits = groups / c->world;
    if (c->rank == 0)
      fprintf(stderr, "synco pretrain: the run had %d process%s of --bn-splits %d; on %d it takes --bn-splits %d, which "
                      "keeps its %d BN groups\n", was, synco_cli_es(was), groups / was, c->world, o->bn_splits, groups);
  } else if (c->rank == 0) {
    fprintf(stderr, "synco pretrain: the run had %d process%s of --bn-splits %d (%d BN groups), which %d processes cannot "
                    "keep: each normalizes its part of the batch in %d groups (--bn-splits), %d in all\n", was,
            synco_cli_es(was), o->bn_splits, groups, c->world, o->bn_splits, o->bn_splits * c->world);
  }
}

/* A resumed run's settings from its checkpoint, the synthetic counts that follow the queue, the library config,
 * and its judgement together with the command line's: every problem is printed at once (exit 2). */
static int configure(pretrain_ctx *c) {
  pretrain_opts *o = &c->o;
  synco_arg *args = c->args;
  if (o->config && o->resume) {
    fprintf(stderr, "synco pretrain: --config and --resume: a resumed run's settings come from its checkpoint; give "
                    "one of them\n");
    return 2;
  }
  if (o->config) {
    if (pretrain_config_file(o, args, o->config, &c->config_json) != SYNCO_OK) {
      synco_cli_error("pretrain");
      return 2;
    }
    c->settings = c->config_json;
    snprintf(c->settings_file, sizeof c->settings_file, "%s", o->config);
    if (!o->data) {
      fprintf(stderr, "synco pretrain: %s names no data: give --data DIR\n", o->config);
      return 2;
    }
  }
  if (o->resume) {
    synco_status s = pretrain_resolve_resume(o, c->resume_path, sizeof c->resume_path, c->resume_dir, sizeof c->resume_dir);
    const int epochs_given = synco_args_seen(args, "epochs");
    char changed[1024];
    if (!s) s = pretrain_resume_config(o, args, c->resume_path, &c->resume_json, changed, sizeof changed);
    if (s) {
      synco_cli_error("pretrain");
      /* a damaged last.safetensors: a numbered checkpoint beside it still resumes the run */
      const char *slash = strrchr(c->resume_path, '/');
      char dir[1100], older[256];
      snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - c->resume_path) : 1, slash ? c->resume_path : ".");
      if (s == SYNCO_ERR_FORMAT && !strcmp(slash ? slash + 1 : c->resume_path, "last.safetensors") &&
          synco_cli_newest_numbered_checkpoint(dir, older, sizeof older))
        fprintf(stderr, "synco pretrain: %s also holds %s: --resume %s/%s continues from that epoch\n", dir, older, dir,
                older);
      return s == SYNCO_ERR_ARG ? 2 : 1;
    }
    /* a resumed run keeps every setting of the run (the thread count too: the sums depend on it) but those given */
    if (changed[0] && c->rank == 0) fprintf(stderr, "synco pretrain: resuming with %s\n", changed);
    o->resume = c->resume_path;
    c->settings = c->resume_json;
    snprintf(c->settings_file, sizeof c->settings_file, "%s: synco.config", c->resume_path);
    if (!o->data) {
      fprintf(stderr, "synco pretrain: %s does not say which data it was trained on: give --data\n", o->resume);
      return 2;
    }
    /* the run's own length and schedule, for the note on a changed --epochs (pretrain_setup) */
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(c->resume_json, "epochs"),
                *se = cJSON_GetObjectItemCaseSensitive(c->resume_json, "schedule_epochs");
    if (epochs_given && cJSON_IsNumber(e)) {
      c->resume_epochs = e->valueint;
      c->resume_schedule_epochs = cJSON_IsNumber(se) ? se->valueint : 0;
    }
    keep_bn_groups(c, args);
  }
  resolve_paths(c);
  const int rc = pretrain_init_arch(c); /* --init's ResNet, for the flags not given */
  if (rc != PRETRAIN_GO) return rc;
  int depth = 0;
  if (!parse_arch(o->arch, &depth)) {
    synco_arg_problem(&c->problems, "--arch must be resnet18, resnet34 or resnet50, got '%s'", o->arch);
    depth = 50; /* stands in, so that the rest of the config is still judged */
  }
  /* Synthetic counts not given follow the queue: n_hard = min(1024, K/4), each unset nK at most n_hard. A resumed
   * run's saved counts were resolved when it started: they count as given. */
  const int saved = c->settings != NULL;
  /* given: on the command line, or in the settings file (a hand-written --config may leave n_hard out) */
#define GIVEN(flag, key) (synco_args_seen(args, flag) || (saved && cJSON_GetObjectItemCaseSensitive(c->settings, key)))
  int n_given[6], preset[6];
  method_preset(o->method, preset); /* the method in force: the flag's, or the settings file's */
  for (int t = 0; t < 6; t++) {
    char nm[4] = {'n', (char)('1' + t), 0, 0};
    n_given[t] = GIVEN(nm, nm);
    if (!n_given[t] && pretrain_method_known(o->method))
      o->n[t] = preset[t]; /* parse() took --method's (the flag's) before the file was read */
  }
  synco_negatives_config ncfg = {.n_hard = o->n_hard};
  memcpy(ncfg.n, o->n, sizeof ncfg.n);
  synco_negatives_scale_defaults(&ncfg, o->moco_k, GIVEN("n-hard", "n_hard"), n_given);
#undef GIVEN
  o->n_hard = ncfg.n_hard;
  memcpy(o->n, ncfg.n, sizeof o->n);
  /* --method synco or mochi with no synthetic negative left trains MoCo-v2 under the other name (--n-hard 0 once
   * capped every count to 0 silently) */
  if (strcmp(o->method, "moco") && !saved) {
    const int any = synco_negatives_total(&ncfg) > 0;
    if (!any && synco_args_seen(args, "n-hard") && o->n_hard < 1)
      synco_arg_problem(&c->problems, "--n-hard %d leaves --method %s no hard negatives to make synthetic ones from "
                        "(at least 1; --method moco trains without them)", o->n_hard, o->method);
    else if (!any && c->rank == 0)
      fprintf(stderr, "synco pretrain: every synthetic count (--n1..--n6) is 0: --method %s trains as --method moco\n",
              o->method);
  } else if (!saved && synco_negatives_total(&ncfg) > 0 && c->rank == 0) { /* --method moco --n1 5 */
    char given[96] = "";
    for (int t = 0; t < 6; t++)
      if (o->n[t] > 0)
        snprintf(given + strlen(given), sizeof given - strlen(given), "%s--n%d %d", *given ? ", " : "", t + 1, o->n[t]);
    fprintf(stderr, "synco pretrain: --method moco with %s: it trains with those synthetic negatives (after "
                    "--warmup-epochs); --method sets only the counts not given\n", given);
  }
  /* the kNN monitor measures on --val: asked for without it, it would silently never run */
  if (o->knn_every > 0 && !o->val && synco_args_seen(args, "knn-every"))
    synco_arg_problem(&c->problems, "--knn-every %d needs --val DIR (the labelled images the kNN monitor is measured "
                      "on)", o->knn_every);
  if (o->val && o->knn_every <= 0 && synco_args_seen(args, "val") && c->rank == 0)
    fprintf(stderr, "synco pretrain: --val is read only by the kNN monitor, which is off: --knn-every N measures it "
                    "every N epochs\n");
  if (c->world > 1 && o->batch % c->world)
    synco_arg_problem(&c->problems, "-b %d (the global batch) does not divide across %d processes", o->batch, c->world);
  /* --init's weights would be ignored: a resumed run's come from its checkpoint */
  if (o->resume && synco_args_seen(args, "init"))
    synco_arg_problem(&c->problems, "--init %s starts a new run from its weights; --resume continues a run from its "
                      "checkpoint's: give one of them", o->init);
  /* the two schedules' own flags, given for the other one: --schedule under the cosine would be ignored silently */
  if (o->cos && synco_args_seen(args, "schedule"))
    synco_arg_problem(&c->problems, "--schedule gives the step schedule's epochs, but the schedule is cosine%s: add "
                      "--no-cos for steps", synco_args_seen(args, "cos") ? " (--cos)" : " (the default)");
  if (!o->cos && synco_args_seen(args, "schedule-epochs") && c->rank == 0)
    fprintf(stderr, "synco pretrain: --schedule-epochs is the cosine schedule's length; with --no-cos the rate drops "
                    "x0.1 at --schedule's epochs and --schedule-epochs changes nothing\n");
  library_config(c, depth);
  /* one judge for the flags and a resumed run's settings: those read from its checkpoint are named by the file and
   * their key there, not by a flag the user never gave */
  char msg[sizeof c->problems.text];
  const synco_config_origin origin = {pretrain_config_from_file, c, c->settings_file};
  /* a global batch that does not divide has no per-process batch to judge the rest by (its truncation made up
   * problems of a batch of 7 for -b 15 on 2 processes) */
  const int batch_divides = c->world <= 1 || o->batch % c->world == 0;
  if (batch_divides && synco_pretrain_config_check(&c->cfg, c->settings ? &origin : NULL, msg, sizeof msg, NULL) != SYNCO_OK)
    for (const char *s = msg, *nl; (nl = strchr(s, '\n')); s = nl + 1) synco_arg_problem(&c->problems, "%.*s", (int)(nl - s), s);
  if (synco_backend_precision(o->backend, o->precision) != SYNCO_OK) {
    if (c->settings && pretrain_config_from_file(c, "precision")) /* the run's own, not a flag the user gave */
      synco_arg_problem(&c->problems, "%s: precision %s: %s (give --precision fp32 to run in fp32)", c->settings_file,
                        o->precision, synco_last_error());
    else
      synco_arg_problem(&c->problems, "%s", synco_last_error());
  }
  if (synco_arg_problems_print("pretrain", &c->problems)) return 2;
  resume_precision_note(c);
  const int threads_from_file = o->threads > 0 && c->settings && pretrain_config_from_file(c, "threads");
  o->threads = synco_cli_set_threads("pretrain", o->threads,
                                     !threads_from_file ? NULL : o->resume ? "the run's" : "the --config file's");
  return PRETRAIN_GO;
}

/* ---- the command ------------------------------------------------------------------------------------------- */

static void pretrain_free(pretrain_ctx *c) {
  /* the loader's threads first: they are joined before anything else goes, so no teardown overlaps a worker still
   * assembling the next epoch's batches (an interrupt at an epoch's start leaves them busy) */
  synco_loader_free(c->loader);
  c->loader = NULL;
  cJSON_Delete(c->resume_json);
  cJSON_Delete(c->config_json);
  free(c->cfg_json);
  pretrain_knn_free(&c->knn);
  pretrain_probe_free(&c->probe);
  synco_moco_free(c->moco);
  synco_backend_destroy(c->be);
  synco_dataset_free(c->train);
}

int synco_cmd_pretrain(int argc, char **argv) {
  pretrain_ctx ctx = {.o = DEFAULTS, .lock_fd = -1};
  pretrain_ctx *c = &ctx;
  if (synco_dist_create(&c->dist) != SYNCO_OK) return synco_cli_error("pretrain");
  c->rank = c->dist->rank;
  c->world = c->dist->world;
  if (c->rank > 0 && !freopen("/dev/null", "w", stdout)) /* rank 0 alone prints */
    fprintf(stderr, "synco pretrain: rank %d: cannot silence stdout\n", c->rank);
  flag_table(c);
  int rc = parse(c, argc, argv);                 /* argv -> options */
  if (rc == PRETRAIN_GO) rc = configure(c);      /* options + a resumed run's settings -> a validated config */
  rc = pretrain_agree(c, rc);                    /* a rank whose flags were refused stops every rank */
  if (rc == PRETRAIN_GO) rc = pretrain_setup(c); /* data, memory check, model, run directory */
  const int ran = rc == PRETRAIN_GO;
  if (ran) rc = pretrain_run(c);                 /* the epochs, each saved at its end */
  /* a run that stopped before its first checkpoint puts back the earlier run that --force set aside */
  pretrain_run_dir_close(c, rc);
  if (ran && rc != 0 && c->world > 1 && !c->stopped) { /* a stop the ranks agreed on ends each of them alike */
    /* the other ranks wait in this step's collectives: end them now, and the launcher ends the job */
    fprintf(stderr, "synco pretrain: rank %d of %d stopped (exit %d); ending every rank\n", c->rank, c->world, rc);
    synco_dist_abort(c->dist, rc);
  }
  pretrain_free(c);
  synco_dist_free(c->dist);
  return rc;
}
