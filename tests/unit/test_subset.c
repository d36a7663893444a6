/* Label subsets and splits: "1%" / "10%" / "N" parse; the balanced subset has the same count in every class,
 * is identical for the same seed and differs for another, never picks out-of-range labels; the held-out split
 * takes the last N of each class and partitions the indices. */
#include <stdlib.h>
#include <string.h>

#include "eval/subset.h"
#include "test_util.h"

int main(void) {
  double f;
  int pc;
  CHECK_OK(synco_label_spec_parse("10%", &f, &pc));
  CHECK(f == 0.1 && pc == 0);
  CHECK_OK(synco_label_spec_parse("1%", &f, &pc));
  CHECK(f == 0.01 && pc == 0);
  CHECK_OK(synco_label_spec_parse("25", &f, &pc));
  CHECK(f == 0 && pc == 25);
  const char *bad[] = {"", "0", "-3", "0%", "101%", "ten", "10%%", "5x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(synco_label_spec_parse(bad[i], &f, &pc) == SYNCO_ERR_ARG);

  /* 3 classes of 500, 300 and 200 samples, interleaved, plus some unlabelled. */
  enum { N = 1050, C = 3 };
  int labels[N];
  for (int i = 0; i < N; i++) labels[i] = i % 21 == 20 ? -1 : (i % 10 < 5 ? 0 : i % 10 < 8 ? 1 : 2);
  int total[C] = {0};
  for (int i = 0; i < N; i++)
    if (labels[i] >= 0) total[labels[i]]++;
  uint32_t *a = NULL, *b = NULL, *c = NULL;
  size_t na, nb, nc;
  CHECK_OK(synco_subset_balanced(&a, &na, labels, N, C, 0, 40, 7));
  CHECK_OK(synco_subset_balanced(&b, &nb, labels, N, C, 0, 40, 7));
  CHECK_OK(synco_subset_balanced(&c, &nc, labels, N, C, 0, 40, 8));
  CHECK(na == 3 * 40 && nb == na && nc == na);
  if (a && b && c) {
    int per[C] = {0};
    for (size_t i = 0; i < na; i++) {
      CHECK(labels[a[i]] >= 0);
      if (labels[a[i]] >= 0) per[labels[a[i]]]++;
      if (i) CHECK(a[i] > a[i - 1]);
    }
    CHECK(per[0] == 40 && per[1] == 40 && per[2] == 40);
    CHECK(!memcmp(a, b, na * sizeof *a));
    CHECK(memcmp(a, c, na * sizeof *a) != 0);
  }
  free(a), free(b), free(c);
  /* 10%: per class round(0.1 * n_c). */
  CHECK_OK(synco_subset_balanced(&a, &na, labels, N, C, 0.1, 0, 3));
  if (a) {
    int per[C] = {0};
    for (size_t i = 0; i < na; i++) per[labels[a[i]]]++;
    for (int k = 0; k < C; k++) CHECK(per[k] == (int)(0.1 * total[k] + 0.5));
  }
  free(a);
  /* More per class than there are: all of them. */
  CHECK_OK(synco_subset_balanced(&a, &na, labels, N, C, 0, 100000, 3));
  CHECK(na == (size_t)(total[0] + total[1] + total[2]));
  free(a);

  uint32_t *rest = NULL, *held = NULL;
  size_t nr, nh;
  CHECK_OK(synco_split_last_per_class(&rest, &nr, &held, &nh, labels, N, C, 10));
  CHECK(nh == 30 && nr + nh == N);
  if (held && rest) {
    int per[C] = {0};
    for (size_t i = 0; i < nh; i++) per[labels[held[i]]]++;
    CHECK(per[0] == 10 && per[1] == 10 && per[2] == 10);
    /* Every held-out sample comes after every kept sample of its class. */
    for (size_t i = 0; i < nh; i++)
      for (size_t j = 0; j < nr; j++)
        if (labels[rest[j]] == labels[held[i]]) CHECK(rest[j] < held[i]);
  }
  free(rest), free(held);
  return synco_test_finish("test_subset");
}
