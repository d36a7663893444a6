/* SynCo's six synthetic hard negatives (docs/method.md), made per query from the hardest queue entries.
 * The work is split in three so that a test can feed externally made random draws and so that the forward
 * pass allocates nothing: synco_negatives_draw() fills plain arrays of draws (positions inside the hard set,
 * coefficients, type-4 noise) from the counter RNG; synco_negatives_logits() selects each query's hard set,
 * computes every synthetic logit q·s/T and keeps the inverse norms that the backward needs;
 * synco_negatives_backward() adds the gradient of the loss through those logits to dq. Synthetic vectors are
 * detached constants, as in the authors' code, so d(q·s/T)/dq = s/T even for types 1, 2, 5 and 6, which are
 * made from q itself. Every synthetic is a linear combination of q, sign(q), one or two queue rows and (type 4)
 * a noise vector, so its logit and norm come in closed form from q·n (already in l_neg), ‖n‖², n·n', and a few
 * dot products with the noise or sign(q): nothing of size (synthetic × dim) is ever materialized. */
#ifndef SYNCO_SSL_NEGATIVES_H
#define SYNCO_SSL_NEGATIVES_H

#include <stdint.h>

#include "synco.h"
#include "tensor/backend.h"

#include "tensor/negatives_op.h"

/* Checks a config against dim and queue size K (counts ≥ 0, n_hard ≤ K, each count ≤ n_hard when on, σ, δ, η
 * finite and ≥ 0). */
synco_status synco_negatives_check(const synco_negatives_config *cfg, int K);
/* The paper's counts (n_hard 1024 of a queue of 65536) made to fit a smaller queue of K rows: unless given,
 * n_hard = min(SYNCO_NEG_HARD_DEFAULT, max(1, K / 4)), and each count not given (given[t] == 0) becomes
 * min(its preset, n_hard). Counts that were given are kept as they are (synco_negatives_check judges them). */
#define SYNCO_NEG_HARD_DEFAULT 1024
void synco_negatives_scale_defaults(synco_negatives_config *cfg, int K, int n_hard_given, const int given[SYNCO_NEG_TYPES]);
/* Σ of the (positive) counts, INT_MAX when the sum does not fit an int (synco_pretrain_config_validate refuses a
 * config whose logits per query, 1 + K + Σ, do not fit one). */
int synco_negatives_total(const synco_negatives_config *cfg);
/* Allocates everything for B queries of size dim against a queue of K rows in be's memory, with the workspace be
 * asks for (its neg_workspace op). The draws, logits and backward below are be's ops. */
synco_status synco_negatives_init(synco_negatives_draws *d, synco_backend *be, const synco_negatives_config *cfg,
                                  int B, int dim, int K);
void synco_negatives_free(synco_negatives_draws *d);
/* *bytes: what synco_negatives_init would allocate, plus the scratch be keeps for these ops (0 without negatives). */
synco_status synco_negatives_memory_plan(synco_backend *be, const synco_negatives_config *cfg, int B, int dim, int K,
                                         size_t *bytes);

/* Fills the draws for queries query0 .. query0+B-1 from the counter RNG keyed by (seed, step, query0 + i,
 * SYNCO_RNG_NEGATIVES), so the draws do not depend on the thread count. Per query, in type order: type 1
 * (position, α), type 2 (position, β), type 3 (position i, position j, γ), type 4 (position, then dim (rounded
 * up to even) words that become dim normals ×σ by Box-Muller in float), types 5 and 6 (position). Distributed runs pass their global query offset as query0. */
synco_status synco_negatives_draw_at(synco_negatives_draws *d, const synco_negatives_config *cfg, uint64_t seed,
                                     uint64_t step, uint64_t query0);
/* synco_negatives_draw_at with query0 = 0. B and dim are those of synco_negatives_init (checked). */
synco_status synco_negatives_draw(synco_negatives_draws *d, const synco_negatives_config *cfg, int B, int dim,
                                  uint64_t seed, uint64_t step);

/* Forward. q [B, dim] (unit rows), queue [K, dim], l_neg: the raw dot products q·Qᵀ at l_neg[i*ld_lneg + j].
 * Writes each query's `total` synthetic logits q·s/T at syn[i*ld_syn + 0 ..), in the order type 1 block, 2, 3,
 * 4, 5, 6, and keeps the hard sets and inverse norms in d for the backward. */
synco_status synco_negatives_logits(synco_negatives_draws *d, float *syn, int ld_syn, const float *l_neg,
                                    int ld_lneg, const float *q, const float *queue, float T);

/* Backward through the synthetic logits of the last synco_negatives_logits() call. g_syn[i*ld_gsyn + s] is
 * dL/d(synthetic logit s). Adds the q-, sign(q)- and noise-parts of Σ_s g_s·s/T to dq [B, dim] and folds the
 * queue-row parts into g_raw[i*ld_graw + j], the gradient w.r.t. the raw dot product q·Q_j, which the caller
 * turns into dq += g_raw·Q with the GEMM it does for the queue logits anyway. */
synco_status synco_negatives_backward(synco_negatives_draws *d, float *dq, float *g_raw, int ld_graw,
                                      const float *g_syn, int ld_gsyn, const float *q, float T);

#endif
