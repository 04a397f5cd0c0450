/* Shared machinery of the PyTorch parity suites (tests/test_parity.c and
 * tests/test_parity_nn.c).
 *
 * A generator script writes, for every case NAME, the inputs NAME.xK.npy,
 * PyTorch's output NAME.y.npy and, for differentiable cases, a cotangent
 * NAME.gy.npy and the vector-Jacobian products NAME.gxK.npy (one per float
 * input K that is not a state). For each STATE input K it also writes the
 * value the op left there, NAME.sK.npy. A MANIFEST.txt lists the cases.
 *
 * parity_run_case() rebuilds one case with the graph builders, differentiates
 * it with nb_vjp(y, gy), compiles {y, grads...}, runs it once and compares:
 *   - shape and dtype exactly;
 *   - float values to |a - b| <= 1e-5 * max(1, max |expected|);
 *   - bool and integer values exactly;
 *   - the STATE nodes' values (nb_node_value) after the run with NAME.sK.
 * A missing fixture is a failure naming the file.
 *
 * Float inputs are INPUT nodes fed through nb_session_feed, except those a
 * case marks as parameters, whose values are copied into PARAM nodes, and
 * states, copied into STATE nodes. Integer and bool inputs are INPUTs.
 */
#ifndef NB_TESTS_PARITY_COMMON_H
#define NB_TESTS_PARITY_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "nabla.h"

#define PARITY_MAX_IN 8   /* most inputs a case may have */
#define PARITY_TOL_REL 1e-5

/* Builds a case's output from its input nodes x[0..n_inputs-1]. */
typedef nb_node *(*parity_build_fn)(nb_graph *g, nb_node **x);

typedef struct parity_case {
    const char *name;
    int n_inputs;
    int grad;            /* 1: the fixtures hold gy and gxK */
    unsigned param_mask; /* bit K: float input K is a PARAM, not an INPUT */
    unsigned state_mask; /* bit K: float input K is a STATE (compared after the run) */
    parity_build_fn build;
} parity_case;

/* What tells one suite from another: its case table and the words its
 * messages and output lines use. */
typedef struct parity_suite {
    const char *label;         /* starts each per-case line: "parity", "parity_nn" */
    int name_width;            /* column width of the case name in those lines */
    const char *generator;     /* script named when a fixture is missing */
    const char *table_file;    /* source file named when a case has no table entry */
    bool manifest_state_mask;  /* MANIFEST lines carry a 4th column, the state mask */
    const parity_case *cases;
    int n_cases;
} parity_suite;

/* Runs case c of suite p against the fixtures in dir and prints one line
 * "LABEL NAME ok|FAIL ...". Returns 0 when everything matches; otherwise
 * err holds the reason. */
int parity_run_case(const parity_suite *p, const char *dir, const parity_case *c, char *err,
                    size_t errsz);

/* Checks that dir/MANIFEST.txt and p's case table list the same cases with the
 * same input counts, gradient flags and (where the manifest has them) state
 * masks. Returns 0 when they agree; otherwise err holds the reason. */
int parity_check_manifest(const parity_suite *p, const char *dir, char *err, size_t errsz);

#endif
