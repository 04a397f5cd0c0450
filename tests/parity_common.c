/* Fixture loading, comparison, the per-case run and the MANIFEST check shared
 * by the PyTorch parity suites; parity_common.h describes the rules. */
#include "parity_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Loads DIR/NAME.SUFFIX.npy into out. On failure writes a message naming the
 * file (and, when it is absent, the generator that writes it) to err and
 * returns -1. */
static int load_fixture(const parity_suite *p, const char *dir, const char *name,
                        const char *suffix, nb_tensor *out, char *err, size_t errsz)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.%s.npy", dir, name, suffix);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "missing fixture file %s (run %s)", path, p->generator);
        return -1;
    }
    fclose(f);
    nb_status st = nb_npy_load(path, out);
    if (st != NB_OK) {
        snprintf(err, errsz, "cannot load fixture %s: %s: %s", path, nb_status_str(st),
                 nb_last_error());
        return -1;
    }
    return 0;
}

/* Compares got against exp: dtype and shape exactly, float values within
 * PARITY_TOL_REL * max(1, max |exp|), other dtypes exactly. Stores the largest
 * |got - exp| in *err_out (NaN counts as infinite). Returns 0 when they agree;
 * otherwise writes a message starting with what to err and returns -1. */
static int compare(const char *what, const nb_tensor *got, const nb_tensor *exp,
                   double *err_out, char *err, size_t errsz)
{
    char sg[64], se[64];
    nb_shape_str(got->ndim, got->shape, sg, sizeof sg);
    nb_shape_str(exp->ndim, exp->shape, se, sizeof se);
    *err_out = 0.0;
    if (got->dtype != exp->dtype) {
        snprintf(err, errsz, "%s: dtype %s, expected %s", what, nb_dtype_name(got->dtype),
                 nb_dtype_name(exp->dtype));
        return -1;
    }
    if (!nb_shape_equal(got->ndim, got->shape, exp->ndim, exp->shape)) {
        snprintf(err, errsz, "%s: shape %s, expected %s", what, sg, se);
        return -1;
    }

    int64_t n = nb_tensor_numel(exp);
    bool is_float = nb_dtype_is_float(exp->dtype);
    double scale = 1.0;
    if (is_float) {
        for (int64_t i = 0; i < n; i++) {
            double v = fabs(nb_tensor_get_flat(exp, i));
            if (v > scale)
                scale = v;
        }
    }
    double tol = is_float ? PARITY_TOL_REL * scale : 0.0;

    int64_t worst = -1;
    double max_err = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(nb_tensor_get_flat(got, i) - nb_tensor_get_flat(exp, i));
        if (d != d)
            d = INFINITY;
        if (worst < 0 || d > max_err) {
            max_err = d;
            worst = i;
        }
    }
    *err_out = max_err;
    if (n > 0 && !(max_err <= tol)) {
        snprintf(err, errsz, "%s %s: max |got - expected| = %.3g > tol %.3g at flat index %lld "
                 "(got %.9g, expected %.9g)", what, se, max_err, tol, (long long)worst,
                 nb_tensor_get_flat(got, worst), nb_tensor_get_flat(exp, worst));
        return -1;
    }
    return 0;
}

/* Creates a PARAM (or, when state is set, a STATE) node called name with x's
 * dtype and shape and copies x into its value. Returns the node, or NULL with
 * err set. */
static nb_node *stored_leaf(nb_graph *g, bool state, const char *name, const nb_tensor *x,
                            char *err, size_t errsz)
{
    const char *kind = state ? "state" : "param";
    nb_node *n = state ? nb_state(g, name, x->dtype, x->ndim, x->shape)
                       : nb_param(g, name, x->dtype, x->ndim, x->shape);
    nb_tensor *v = nb_node_value(n);
    if (!v) {
        snprintf(err, errsz, "%s %s has no value tensor (graph: %s)", kind, name,
                 nb_graph_error(g));
        return NULL;
    }
    if (nb_tensor_copy_into(v, x) != NB_OK) {
        snprintf(err, errsz, "copy into %s %s: %s", kind, name, nb_last_error());
        return NULL;
    }
    return n;
}

/* Appends " what=e" to the summary line of *used characters in line[size],
 * keeping *used within the buffer when the text is cut short. */
static void note(char *line, size_t size, size_t *used, const char *what, double e)
{
    *used += (size_t)snprintf(line + *used, size - *used, " %s=%.2e", what, e);
    if (*used >= size)
        *used = size - 1;
}

/* Loads the case's fixtures, builds its graph (inputs, params, states), adds
 * nb_vjp with the gy seed, compiles {y, grads...}, feeds the INPUTs, runs
 * once, then compares y, each gradient and each state. Prints one line with
 * the per-output errors or the failure, and frees everything either way. */
int parity_run_case(const parity_suite *p, const char *dir, const parity_case *c, char *err,
                    size_t errsz)
{
    nb_tensor xs[PARITY_MAX_IN] = {{0}};
    nb_tensor y_exp = {0}, gy = {0};
    nb_tensor gx_exp[PARITY_MAX_IN] = {{0}}, s_exp[PARITY_MAX_IN] = {{0}};
    nb_node *nodes[PARITY_MAX_IN] = {0};
    nb_node *wrt[PARITY_MAX_IN], *grads[PARITY_MAX_IN];
    int wrt_index[PARITY_MAX_IN];
    nb_node *outs[1 + PARITY_MAX_IN];
    int n_wrt = 0, rc = -1;
    nb_graph *g = NULL;
    nb_plan *plan = NULL;
    nb_session *s = NULL;
    char line[1024];
    size_t used = 0;
    double worst = 0.0;

    err[0] = '\0';
    line[0] = '\0';

    if (c->n_inputs < 0 || c->n_inputs > PARITY_MAX_IN) {
        snprintf(err, errsz, "%d inputs, at most %d supported", c->n_inputs, PARITY_MAX_IN);
        goto done;
    }

    /* fixtures */
    for (int i = 0; i < c->n_inputs; i++) {
        char suffix[16];
        snprintf(suffix, sizeof suffix, "x%d", i);
        if (load_fixture(p, dir, c->name, suffix, &xs[i], err, errsz))
            goto done;
        if (c->state_mask & (1u << i)) {
            snprintf(suffix, sizeof suffix, "s%d", i);
            if (load_fixture(p, dir, c->name, suffix, &s_exp[i], err, errsz))
                goto done;
        }
    }
    if (load_fixture(p, dir, c->name, "y", &y_exp, err, errsz))
        goto done;
    if (c->grad) {
        if (load_fixture(p, dir, c->name, "gy", &gy, err, errsz))
            goto done;
        for (int i = 0; i < c->n_inputs; i++) {
            if (!nb_dtype_is_float(xs[i].dtype) || (c->state_mask & (1u << i)))
                continue;
            char suffix[16];
            snprintf(suffix, sizeof suffix, "gx%d", i);
            if (load_fixture(p, dir, c->name, suffix, &gx_exp[i], err, errsz))
                goto done;
        }
    }

    /* graph */
    g = nb_graph_new();
    if (!g) {
        snprintf(err, errsz, "nb_graph_new failed");
        goto done;
    }
    for (int i = 0; i < c->n_inputs; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        bool is_float = nb_dtype_is_float(xs[i].dtype);
        bool is_state = is_float && (c->state_mask & (1u << i));
        if (is_state || (is_float && (c->param_mask & (1u << i)))) {
            nodes[i] = stored_leaf(g, is_state, name, &xs[i], err, errsz);
            if (!nodes[i])
                goto done;
        } else {
            nodes[i] = nb_input(g, name, xs[i].dtype, xs[i].ndim, xs[i].shape);
        }
        if (c->grad && is_float && !is_state) {
            wrt_index[n_wrt] = i;
            wrt[n_wrt++] = nodes[i];
        }
    }
    nb_node *y = c->build(g, nodes);
    if (c->grad && nb_graph_status(g) == NB_OK) {
        nb_node *seed = nb_constant(g, &gy);
        nb_status st = nb_vjp(g, y, seed, n_wrt, wrt, grads);
        if (st != NB_OK && nb_graph_status(g) == NB_OK) {
            snprintf(err, errsz, "nb_vjp: %s: %s", nb_status_str(st), nb_last_error());
            goto done;
        }
    }
    if (nb_graph_status(g) != NB_OK) {
        snprintf(err, errsz, "graph failed: %s", nb_graph_error(g));
        goto done;
    }

    /* compile and run once */
    int n_out = 0;
    outs[n_out++] = y;
    for (int k = 0; k < n_wrt; k++)
        outs[n_out++] = grads[k];
    plan = nb_compile(g, n_out, outs, NULL);
    if (!plan) {
        snprintf(err, errsz, "nb_compile: %s", nb_last_error());
        goto done;
    }
    s = nb_session_new(plan);
    if (!s) {
        snprintf(err, errsz, "nb_session_new failed");
        goto done;
    }
    for (int i = 0; i < c->n_inputs; i++) {
        if (nb_node_op(nodes[i]) != NB_OP_INPUT)
            continue;
        nb_status st = nb_session_feed(s, nodes[i], &xs[i]);
        if (st != NB_OK) {
            snprintf(err, errsz, "feed x%d: %s", i, nb_last_error());
            goto done;
        }
    }
    nb_status st = nb_session_run(s);
    if (st != NB_OK) {
        snprintf(err, errsz, "nb_session_run: %s: %s", nb_status_str(st), nb_last_error());
        goto done;
    }

    /* compare y, then each gradient */
    for (int k = 0; k < n_out; k++) {
        char what[16];
        const nb_tensor *exp;
        if (k == 0) {
            snprintf(what, sizeof what, "y");
            exp = &y_exp;
        } else {
            snprintf(what, sizeof what, "gx%d", wrt_index[k - 1]);
            exp = &gx_exp[wrt_index[k - 1]];
        }
        nb_tensor got = {0};
        st = nb_session_fetch(s, outs[k], &got);
        if (st != NB_OK) {
            snprintf(err, errsz, "fetch %s: %s", what, nb_last_error());
            goto done;
        }
        double e;
        int bad = compare(what, &got, exp, &e, err, errsz);
        nb_tensor_release(&got);
        worst = e > worst ? e : worst;
        note(line, sizeof line, &used, what, e);
        if (bad)
            goto done;
    }

    /* then the states, as the run left them */
    for (int i = 0; i < c->n_inputs; i++) {
        if (!(c->state_mask & (1u << i)))
            continue;
        char what[16];
        snprintf(what, sizeof what, "s%d", i);
        const nb_tensor *v = nb_node_value(nodes[i]);
        if (!v) {
            snprintf(err, errsz, "state x%d has no value after the run", i);
            goto done;
        }
        double e;
        int bad = compare(what, v, &s_exp[i], &e, err, errsz);
        worst = e > worst ? e : worst;
        note(line, sizeof line, &used, what, e);
        if (bad)
            goto done;
    }
    rc = 0;

done:
    if (rc == 0)
        printf("%s %-*s ok   max_err=%.2e  (%s )\n", p->label, p->name_width, c->name, worst,
               line);
    else
        printf("%s %-*s FAIL %s\n", p->label, p->name_width, c->name, err);
    fflush(stdout);

    nb_session_free(s);
    nb_plan_free(plan);
    nb_graph_free(g);
    for (int i = 0; i < PARITY_MAX_IN; i++) {
        nb_tensor_release(&xs[i]);
        nb_tensor_release(&gx_exp[i]);
        nb_tensor_release(&s_exp[i]);
    }
    nb_tensor_release(&y_exp);
    nb_tensor_release(&gy);
    return rc;
}

/* Reads dir/MANIFEST.txt ("name n_inputs grad|nograd [state_mask] ...", '#'
 * comments and blank lines skipped) and checks it against p's table: every
 * manifest case has exactly one table entry with the same input count,
 * gradient flag and (when the manifest carries one) state mask, and every
 * table entry is in the manifest. Returns 0 when they agree; otherwise writes
 * the first disagreement, prefixed by the manifest's path, to err. */
int parity_check_manifest(const parity_suite *p, const char *dir, char *err, size_t errsz)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/MANIFEST.txt", dir);
    err[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errsz, "missing fixture file %s (run %s)", path, p->generator);
        return -1;
    }
    int *seen = calloc(p->n_cases > 0 ? (size_t)p->n_cases : 1, sizeof *seen);
    if (!seen) {
        fclose(f);
        snprintf(err, errsz, "%s: out of memory", path);
        return -1;
    }

    char buf[1024];
    char problem[512] = "";
    while (fgets(buf, sizeof buf, f)) {
        char name[128], flag[16];
        int n_in;
        unsigned smask = 0;
        if (buf[0] == '#' || buf[0] == '\n')
            continue;
        int ok = p->manifest_state_mask
                     ? sscanf(buf, "%127s %d %15s %x", name, &n_in, flag, &smask) == 4
                     : sscanf(buf, "%127s %d %15s", name, &n_in, flag) == 3;
        if (!ok) {
            snprintf(problem, sizeof problem, "malformed line: %.200s", buf);
            break;
        }
        int found = -1;
        for (int k = 0; k < p->n_cases; k++)
            if (strcmp(p->cases[k].name, name) == 0)
                found = k;
        if (found < 0) {
            snprintf(problem, sizeof problem, "fixture case %s has no entry in %s", name,
                     p->table_file);
            break;
        }
        if (seen[found]) {
            snprintf(problem, sizeof problem, "case %s listed twice", name);
            break;
        }
        seen[found] = 1;
        int grad = strcmp(flag, "grad") == 0;
        const parity_case *c = &p->cases[found];
        if (c->n_inputs != n_in || c->grad != grad
            || (p->manifest_state_mask && c->state_mask != smask)) {
            if (p->manifest_state_mask)
                snprintf(problem, sizeof problem,
                         "case %s: manifest says %d inputs %s states 0x%x, table says %d inputs "
                         "%s states 0x%x", name, n_in, flag, smask, c->n_inputs,
                         c->grad ? "grad" : "nograd", c->state_mask);
            else
                snprintf(problem, sizeof problem,
                         "case %s: manifest says %d inputs %s, table says %d inputs %s", name,
                         n_in, flag, c->n_inputs, c->grad ? "grad" : "nograd");
            break;
        }
    }
    fclose(f);

    int rc = 0;
    if (problem[0] != '\0') {
        snprintf(err, errsz, "%s: %s", path, problem);
        rc = -1;
    } else {
        for (int k = 0; k < p->n_cases; k++) {
            if (!seen[k]) {
                snprintf(err, errsz, "case %s is not in %s (regenerate the fixtures)",
                         p->cases[k].name, path);
                rc = -1;
                break;
            }
        }
    }
    free(seen);
    return rc;
}
