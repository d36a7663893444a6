/* How idle OpenMP threads wait: see wait_policy.c. */
#ifndef SYNCO_CLI_WAIT_POLICY_H
#define SYNCO_CLI_WAIT_POLICY_H

/* The spin count synco gives libgomp when the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT. */
#define SYNCO_GOMP_SPINCOUNT "3000"

/* Call first in main: re-executes the program once with GOMP_SPINCOUNT set (libgomp reads it only when it loads),
 * unless the user chose a wait policy. Returns only if no re-exec happened or it failed (then nothing changes). */
void synco_wait_policy_init(char **argv);

/* One line for `synco info`: how waiting threads wait, and who chose it. */
const char *synco_wait_policy_describe(void);

#endif
