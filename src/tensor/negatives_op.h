/* The synthetic negatives' configuration and their draws and workspace: the descriptor of the backend's three
 * negatives ops (tensor/backend.h), shared by ssl/negatives.h (which documents the method and owns the life
 * cycle) and every backend that implements them. */
#ifndef SYNCO_TENSOR_NEGATIVES_OP_H
#define SYNCO_TENSOR_NEGATIVES_OP_H

#include <stddef.h>
#include <stdint.h>

struct synco_backend;

#define SYNCO_NEG_TYPES 6

typedef struct {
  int n_hard;                 /* size of the hard set H (top n_hard of q·Qᵀ per query) */
  int n[SYNCO_NEG_TYPES];     /* synthetic count per type 1..6 (index 0..5); 0 switches a type off */
  float sigma;                /* type 4: ε ~ N(0, σ²) */
  float delta;                /* type 5: s = n + δ·q */
  float eta;                  /* type 6: s = n + η·sign(q) */
} synco_negatives_config;

/* Draws and workspace for B queries. Every array is plain and row-major per query, so a test may fill the draw
 * arrays itself instead of calling synco_negatives_draw(). "Position p of H" is the p-th largest queue logit of
 * the query (p = 0 the largest), as torch.topk's sorted output. */
typedef struct {
  struct synco_backend *be;   /* whose memory holds every array below and whose ops fill them */
  int B, dim, K, n_hard;
  int n[SYNCO_NEG_TYPES];
  int total;                  /* Σ n[t]: synthetic logits per query */
  float delta, eta;
  /* the draws */
  int32_t *pos[SYNCO_NEG_TYPES]; /* [B, n[t]] positions in H; type 3 ([2]): [B, n3, 2] (n_i, n_j) */
  float *coef[3];             /* [B, n[t]]: α ∈ [0,0.5) (type 1), β ∈ [1,1.5) (type 2), γ ∈ [0,1) (type 3) */
  float *noise;               /* [B, n4, dim]: ε, already scaled by σ */
  /* kept by synco_negatives_logits() for the backward */
  int32_t *hard;              /* [B, n_hard] queue row of each position, logit descending */
  float *inv_norm;            /* [B, total] 1 / max(‖s_raw‖, 1e-12) */
  /* workspace */
  float *row_sq;              /* [K] ‖Q_j‖² */
  /* the backend's workspace, sized by its neg_workspace op (NULL where it has none); on the CPU backends: */
  uint32_t *sel;              /* [nthreads, 4·K + 2048] selection workspace */
  float *wpos;                /* [nthreads, n_hard] backward weights per hard position */
  float *sgn;                 /* [nthreads, dim] sign(q) */
  uint32_t *words;            /* per thread: where the noise words start, and the noise's random words */
  int nthreads;
} synco_negatives_draws;

/* Bytes of the draws' workspace arrays on a backend (its neg_workspace op), and of the scratch it keeps itself. */
typedef struct {
  size_t sel, wpos, sgn, words;
  size_t scratch;
} synco_negatives_workspace;

#endif
