/* nabla run / info / conformance: running ONNX models from the command line.
 *
 * run: inputs in graph order (.npy, or .pb TensorProto files), outputs
 * printed (name, shape, dtype, values) or written as DIR/output_k.npy.
 * info: inputs and outputs with their dims, op counts, parameter count and
 * FLOPs (of the declared shapes with dynamic dims taken as 1, or of the
 * inputs given).
 * conformance: ONNX backend test directories (model.onnx and
 * test_data_set_N/{input,output}_K.pb), each run in a child process so that a
 * crash is reported as one, compared the official way (shape and dtype
 * exact; floats (f16 and bf16 too) |actual - expected| <= 1e-7 + 1e-3
 * |expected|, NaN matching NaN; integers and bools equal, bit for bit;
 * the test data holds bfloat16 tensors as UINT16, NumPy having no bfloat16,
 * so a UINT16 tensor given for a BFLOAT16 input or output is read as its
 * bits);
 * prints skipped and failed tests with their reasons, a per-op table and
 * "N passed, N failed, N skipped". A DIR without model.onnx is a folder of
 * test directories.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nabla.h"
#include "tools/cli.h"
#include "tools/onnx_cmds.h"

void onnx_usage(void)
{
    puts("  run MODEL.onnx -i X [-i ...] [-o DIR] [--profile N]\n"
         "                       run an ONNX model on inputs (.npy or .pb, in graph order); print\n"
         "                       the outputs or write them as DIR/output_K.npy; --profile N then\n"
         "                       runs N more times and prints the time per op type and node\n"
         "  info MODEL.onnx [-i X ...]\n"
         "                       inputs, outputs, op counts, parameters and FLOPs of a model\n"
         "  conformance DIR...   run ONNX backend test directories and report passed/failed/skipped");
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A tensor from a .pb TensorProto or a .npy file. */
static nb_status read_tensor(const char *path, nb_tensor *t)
{
    return ends_with(path, ".pb") ? nb_onnx_read_tensor_file(path, t) : nb_npy_load(path, t);
}

/* MODEL [-i X]... [-o DIR] [--profile N]: parsed into the arrays given. */
typedef struct run_args {
    const char *model, *out_dir;
    int n_in;
    const char *in[NB_ONNX_MAX_IO];
    long profile; /* runs to profile, 0: none */
} run_args;

static int parse_run_args(const char *who, int argc, char **argv, bool allow_out, run_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (allow_out && strcmp(s, "--profile") == 0) {
            char *end = NULL;
            a->profile = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || !end || *end || a->profile < 1 || a->profile > 1000000)
                return cli_usage_error("%s: --profile needs a run count from 1 to 1000000", who);
            i++;
        } else if (strcmp(s, "-i") == 0 || strcmp(s, "--input") == 0 ||
            (allow_out && (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0))) {
            if (i + 1 >= argc)
                return cli_usage_error("%s: %s needs a value", who, s);
            if (s[1] == 'o' || s[2] == 'o') {
                a->out_dir = argv[++i];
            } else {
                if (a->n_in == NB_ONNX_MAX_IO)
                    return cli_usage_error("%s: more than %d inputs", who, NB_ONNX_MAX_IO);
                a->in[a->n_in++] = argv[++i];
            }
        } else if (s[0] == '-') {
            return cli_usage_error("%s: unknown flag '%s'", who, s);
        } else if (!a->model) {
            a->model = s;
        } else {
            return cli_usage_error("%s: unexpected argument '%s' (inputs need -i)", who, s);
        }
    }
    if (!a->model)
        return cli_usage_error("%s: no model given", who);
    return 0;
}

/* Read the inputs named in a; 0 or 1 after printing the error. */
static int read_inputs(const run_args *a, nb_tensor *in)
{
    for (int i = 0; i < a->n_in; i++) {
        if (read_tensor(a->in[i], &in[i]) != NB_OK) {
            cli_error("%s", nb_last_error());
            for (int k = 0; k < i; k++)
                nb_tensor_release(&in[k]);
            return 1;
        }
    }
    return 0;
}

/* run and info: the arguments parsed into a, the model loaded into *m and
 * the inputs named read into in (for run, exactly as many as the model
 * takes). 0, or the exit status after printing the error, nothing held. */
static int open_model(const char *who, int argc, char **argv, run_args *a, nb_onnx_model **m,
                      nb_tensor *in)
{
    bool run = strcmp(who, "run") == 0;
    int rc = parse_run_args(who, argc, argv, run, a);
    if (rc)
        return rc;
    if (nb_onnx_load(a->model, m) != NB_OK) {
        cli_error("%s", nb_last_error());
        return 1;
    }
    if (run && a->n_in != nb_onnx_num_inputs(*m)) {
        cli_error("run: '%s' takes %d inputs, %d given with -i", a->model,
                  nb_onnx_num_inputs(*m), a->n_in);
        nb_onnx_free(*m);
        return EXIT_USAGE;
    }
    if (read_inputs(a, in)) {
        nb_onnx_free(*m);
        return 1;
    }
    return 0;
}

/* One op type's share of a profile. */
typedef struct op_time {
    const char *op;
    double seconds;
    int nodes;
} op_time;

static int by_time_op(const void *a, const void *b)
{
    double x = ((const op_time *)a)->seconds, y = ((const op_time *)b)->seconds;
    return (x < y) - (x > y);
}

static int by_time_entry(const void *a, const void *b)
{
    double x = ((const nb_profile_entry *)a)->seconds, y = ((const nb_profile_entry *)b)->seconds;
    return (x < y) - (x > y);
}

/* --profile N: a session (its plan made by one run first), N profiled runs,
 * then the time per run of each op type and of the slowest nodes. */
static int profile_runs(nb_onnx_model *m, int n_in, const nb_tensor *in, long runs)
{
    nb_onnx_session *s = nb_onnx_session_new(m);
    nb_profile_entry *e = NULL;
    op_time *ops = NULL;
    nb_tensor out[NB_ONNX_MAX_IO];
    int rc = 1, n = 0;
    double wall = 0;
    for (long r = -1; s && r < runs; r++) { /* run -1: plans and caches */
        if (r == 0 && nb_onnx_session_set_profiling(s, true) != NB_OK)
            goto done;
        int n_out = NB_ONNX_MAX_IO;
        double t0 = nb_now_seconds();
        if (nb_onnx_session_run(s, n_in, in, &n_out, out) != NB_OK)
            goto done;
        if (r >= 0)
            wall += nb_now_seconds() - t0;
        for (int k = 0; k < n_out; k++)
            nb_tensor_release(&out[k]);
    }
    n = s ? nb_onnx_session_profile(s, NULL, 0) : 0;
    e = malloc(((size_t)n + 1) * sizeof *e);
    ops = calloc((size_t)n + 1, sizeof *ops);
    if (!s || !e || !ops) {
        nb_error(NB_ERR_ALLOC, "run: out of memory for the profile");
        goto done;
    }
    n = nb_onnx_session_profile(s, e, n);
    int n_ops = 0;
    double total = 0;
    for (int i = 0; i < n; i++) {
        const char *op = nb_op_name(e[i].op);
        int k = 0;
        while (k < n_ops && strcmp(ops[k].op, op) != 0)
            k++;
        if (k == n_ops)
            ops[n_ops++] = (op_time){op, 0, 0};
        ops[k].seconds += e[i].seconds;
        ops[k].nodes++;
        total += e[i].seconds;
    }
    qsort(ops, (size_t)n_ops, sizeof *ops, by_time_op);
    qsort(e, (size_t)n, sizeof *e, by_time_entry);
    printf("profile: %ld runs, %.3f ms a run (%.3f ms in %d tape entries), %d threads\n", runs,
           1e3 * wall / (double)runs, 1e3 * total / (double)runs, n, nb_get_num_threads());
    printf("%-20s %6s %10s %7s\n", "op", "nodes", "ms/run", "share");
    for (int k = 0; k < n_ops; k++)
        printf("%-20s %6d %10.3f %6.1f%%\n", ops[k].op, ops[k].nodes,
               1e3 * ops[k].seconds / (double)runs, total > 0 ? 100 * ops[k].seconds / total : 0.0);
    printf("slowest nodes:\n");
    for (int i = 0; i < n && i < 15; i++) {
        char shape[96];
        nb_shape_str(nb_node_ndim(e[i].node), nb_node_shape(e[i].node), shape, sizeof shape);
        printf("  %10.3f ms  %-14s %-16s %s\n", 1e3 * e[i].seconds / (double)runs,
               nb_op_name(e[i].op), shape, nb_node_name(e[i].node));
    }
    rc = 0;
done:
    if (rc)
        cli_error("%s", nb_last_error());
    free(e);
    free(ops);
    nb_onnx_session_free(s);
    return rc;
}

int cmd_onnx_run(int argc, char **argv)
{
    run_args a;
    nb_onnx_model *m;
    nb_tensor in[NB_ONNX_MAX_IO] = {{0}}, out[NB_ONNX_MAX_IO] = {{0}};
    int rc = open_model("run", argc, argv, &a, &m, in);
    if (rc)
        return rc;
    int n_out = NB_ONNX_MAX_IO;
    rc = 0;
    if (nb_onnx_run(m, a.n_in, in, &n_out, out) != NB_OK) {
        cli_error("%s", nb_last_error());
        rc = 1;
        n_out = 0;
    }
    if (n_out && a.out_dir && mkdir(a.out_dir, 0755) != 0 && errno != EEXIST) {
        cli_error("run: cannot make directory '%s': %s", a.out_dir, strerror(errno));
        rc = 1;
    }
    for (int k = 0; k < n_out && rc == 0; k++) {
        const nb_onnx_io *io = nb_onnx_output(m, k);
        char shape[96];
        nb_shape_str(out[k].ndim, out[k].shape, shape, sizeof shape);
        if (a.out_dir) {
            char path[4096];
            snprintf(path, sizeof path, "%s/output_%d.npy", a.out_dir, k);
            if (nb_npy_save(path, &out[k]) != NB_OK) {
                cli_error("%s", nb_last_error());
                rc = 1;
            } else {
                printf("output %d '%s' %s %s -> %s\n", k, io->name, shape,
                       nb_dtype_name(out[k].dtype), path);
            }
        } else {
            printf("output %d '%s' %s %s\n", k, io->name, shape, nb_dtype_name(out[k].dtype));
            nb_tensor_print(stdout, &out[k]);
        }
    }
    if (rc == 0 && a.profile)
        rc = profile_runs(m, a.n_in, in, a.profile);
    for (int k = 0; k < NB_ONNX_MAX_IO; k++) {
        nb_tensor_release(&in[k]);
        nb_tensor_release(&out[k]);
    }
    nb_onnx_free(m);
    return rc;
}

/* 1234567 -> "1.23 M" */
static const char *human(double v, char *buf, size_t size)
{
    const char *unit[] = {"", " K", " M", " G", " T", " P"};
    int u = 0;
    while (fabs(v) >= 1000 && u < 5)
        v /= 1000, u++;
    snprintf(buf, size, u ? "%.2f%s" : "%.0f%s", v, unit[u]);
    return buf;
}

int cmd_onnx_info(int argc, char **argv)
{
    run_args a;
    nb_onnx_model *m;
    nb_tensor in[NB_ONNX_MAX_IO] = {{0}};
    int rc = open_model("info", argc, argv, &a, &m, in);
    if (rc)
        return rc;
    nb_onnx_summary s;
    nb_status st = nb_onnx_summarize(m, a.n_in, a.n_in ? in : NULL, &s);
    char buf[64], dims[256];
    printf("model:     %s\n", a.model);
    printf("producer:  %s %s\n", s.producer[0] ? s.producer : "(unknown)", s.producer_version);
    printf("graph:     '%s', ir_version %lld, opset %lld\n", s.graph_name, (long long)s.ir_version,
           (long long)s.opset);
    printf("inputs:\n");
    for (int i = 0; i < nb_onnx_num_inputs(m); i++) {
        const nb_onnx_io *io = nb_onnx_input(m, i);
        printf("  %-24s %-5s %s\n", io->name, nb_dtype_name(io->dtype), nb_onnx_io_str(io, dims, sizeof dims));
    }
    printf("outputs:\n");
    for (int i = 0; i < nb_onnx_num_outputs(m); i++) {
        const nb_onnx_io *io = nb_onnx_output(m, i);
        printf("  %-24s %-5s %s\n", io->name, nb_dtype_name(io->dtype), nb_onnx_io_str(io, dims, sizeof dims));
    }
    printf("nodes:     %d (%d op types)\n", s.n_nodes, s.n_op_types);
    for (int i = 0; i < s.n_op_types; i++)
        printf("  %-24s %d\n", s.ops[i].op_type, s.ops[i].count);
    printf("fused:     %d BatchNormalization and %d Relu/Clip into the Conv before them\n",
           s.fused_bn, s.fused_act);
    printf("params:    %lld (%s bytes)\n", (long long)s.params,
           human((double)s.param_bytes, buf, sizeof buf));
    if (st == NB_OK) {
        printf("flops:     %s (%.0f) for %s\n", human(s.flops, buf, sizeof buf), s.flops,
               a.n_in ? "the inputs given" : "the declared shapes, dynamic dims as 1");
    } else {
        printf("flops:     unknown (%s)\n", nb_last_error());
    }
    for (int k = 0; k < NB_ONNX_MAX_IO; k++)
        nb_tensor_release(&in[k]);
    nb_onnx_free(m);
    return 0;
}

/* ---- conformance -------------------------------------------------------------- */

typedef enum { RES_PASS, RES_FAIL, RES_SKIP, RES_CRASH } res_kind;

typedef struct test_result {
    int kind;
    char op[64];
    char reason[448];
} test_result;

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* "LayerNormalization" -> "layernormalization" for matching directory names
 * (which drop the underscores inconsistently) */
static void squash(const char *s, char *out, size_t size)
{
    size_t k = 0;
    for (; *s && k + 1 < size; s++)
        if (*s != '_')
            out[k++] = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
    out[k] = '\0';
}

/* The op a test is about: the single node's, or the model's op whose name
 * the directory name starts with (longest), or the directory's first word. */
static void test_op(const char *name, const nb_onnx_model *m, const char *load_error, char *op,
                    size_t size)
{
    const char *stem = strncmp(name, "test_", 5) == 0 ? name + 5 : name;
    char sq[256], cand[128];
    squash(stem, sq, sizeof sq);
    size_t best = 0;
    op[0] = '\0';
    for (int i = 0; m && i < nb_onnx_num_nodes(m); i++) {
        const char *t = nb_onnx_node_op_type(m, i);
        squash(t, cand, sizeof cand);
        size_t n = strlen(cand);
        if (nb_onnx_num_nodes(m) == 1 || (n > best && strncmp(sq, cand, n) == 0)) {
            best = n;
            snprintf(op, size, "%s", t);
            if (nb_onnx_num_nodes(m) == 1)
                return;
        }
    }
    if (op[0])
        return;
    const char *u = load_error ? strstr(load_error, "unsupported op '") : NULL;
    if (u) {
        u += strlen("unsupported op '");
        const char *e = strchr(u, '\'');
        size_t n = e ? (size_t)(e - u) : strlen(u);
        snprintf(op, size, "%.*s", (int)(n < size ? n : size - 1), u);
        return;
    }
    const char *us = strchr(stem, '_');
    size_t n = us ? (size_t)(us - stem) : strlen(stem);
    snprintf(op, size, "%.*s", (int)(n < size ? n : size - 1), stem);
}

/* Whether actual matches expected the official way; why not in reason. */
static bool matches(const nb_tensor *a, const nb_tensor *e, int k, char *reason, size_t size)
{
    char sa[96], se[96];
    if (a->dtype != e->dtype || !nb_shape_equal(a->ndim, a->shape, e->ndim, e->shape)) {
        snprintf(reason, size, "output %d: got %s %s, expected %s %s", k,
                 nb_shape_str(a->ndim, a->shape, sa, sizeof sa), nb_dtype_name(a->dtype),
                 nb_shape_str(e->ndim, e->shape, se, sizeof se), nb_dtype_name(e->dtype));
        return false;
    }
    int64_t n = nb_tensor_numel(e);
    bool fl = nb_dtype_is_float(e->dtype) || nb_dtype_is_half(e->dtype);
    bool bits = !fl && nb_tensor_is_contiguous(a) && nb_tensor_is_contiguous(e);
    size_t es = nb_dtype_size(e->dtype);
    for (int64_t i = 0; i < n; i++) {
        double x = nb_tensor_get_flat(a, i), y = nb_tensor_get_flat(e, i);
        bool ok;
        if (bits) /* integers exactly, u64 and i64 above 2^53 too */
            ok = memcmp((const char *)nb_tensor_data(a) + (size_t)i * es,
                        (const char *)nb_tensor_data(e) + (size_t)i * es, es) == 0;
        else if (isnan(y))
            ok = isnan(x);
        else if (isinf(y))
            ok = x == y;
        else
            ok = fabs(x - y) <= 1e-7 + 1e-3 * fabs(y);
        if (!ok) {
            snprintf(reason, size, "output %d %s: element %lld is %.9g, expected %.9g", k,
                     nb_shape_str(e->ndim, e->shape, se, sizeof se), (long long)i, x, y);
            return false;
        }
    }
    return true;
}

/* Skip what nabla declares unsupported; anything else failed. */
static void set_error(test_result *r, nb_status s, const char *prefix)
{
    r->kind = s == NB_ERR_UNSUPPORTED ? RES_SKIP : RES_FAIL;
    snprintf(r->reason, sizeof r->reason, "%s%s", prefix, nb_last_error());
}

/* Read dir/prefix_K.pb for K = 0, 1, ... while they exist. */
static int read_pbs(const char *dir, const char *prefix, nb_tensor *t, nb_status *st)
{
    int n = 0;
    *st = NB_OK;
    for (; n < NB_ONNX_MAX_IO; n++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, n);
        if (!is_file(path))
            break;
        *st = nb_onnx_read_tensor_file(path, &t[n]);
        if (*st != NB_OK)
            break;
    }
    return n;
}

/* ONNX's test data writes bfloat16 tensors as UINT16 (their bits): read them
 * as bf16 where the model declares BFLOAT16. */
static void bf16_from_bits(const nb_onnx_model *m, nb_tensor *in, int n_in, nb_tensor *exp,
                           int n_exp)
{
    for (int k = 0; k < n_in && k < nb_onnx_num_inputs(m); k++)
        if (in[k].dtype == NB_U16 && nb_onnx_input(m, k)->dtype == NB_BF16)
            in[k].dtype = NB_BF16;
    for (int k = 0; k < n_exp && k < nb_onnx_num_outputs(m); k++)
        if (exp[k].dtype == NB_U16 && nb_onnx_output(m, k)->dtype == NB_BF16)
            exp[k].dtype = NB_BF16;
}

static void run_test(const char *dir, const char *name, test_result *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    nb_onnx_model *m = NULL;
    nb_status s = nb_onnx_load(path, &m);
    if (s != NB_OK) {
        test_op(name, NULL, nb_last_error(), r->op, sizeof r->op);
        set_error(r, s, "");
        return;
    }
    test_op(name, m, NULL, r->op, sizeof r->op);
    r->kind = RES_PASS;
    int sets = 0;
    for (int d = 0; r->kind == RES_PASS; d++) {
        char set[4096];
        snprintf(set, sizeof set, "%s/test_data_set_%d", dir, d);
        if (!is_dir(set))
            break;
        sets++;
        nb_tensor in[NB_ONNX_MAX_IO] = {{0}}, exp[NB_ONNX_MAX_IO] = {{0}}, out[NB_ONNX_MAX_IO] = {{0}};
        int n_in = read_pbs(set, "input", in, &s), n_exp = 0, n_out = NB_ONNX_MAX_IO;
        if (s == NB_OK)
            n_exp = read_pbs(set, "output", exp, &s);
        if (s == NB_OK)
            bf16_from_bits(m, in, n_in, exp, n_exp);
        if (s != NB_OK) {
            set_error(r, s, "test data: ");
        } else if ((s = nb_onnx_run(m, n_in, in, &n_out, out)) != NB_OK) {
            set_error(r, s, "");
        } else if (n_out != n_exp) {
            r->kind = RES_FAIL;
            snprintf(r->reason, sizeof r->reason, "%d outputs, the test data has %d", n_out, n_exp);
        } else {
            for (int k = 0; k < n_out && r->kind == RES_PASS; k++)
                if (!matches(&out[k], &exp[k], k, r->reason, sizeof r->reason))
                    r->kind = RES_FAIL;
        }
        for (int k = 0; k < NB_ONNX_MAX_IO; k++) {
            nb_tensor_release(&in[k]);
            nb_tensor_release(&exp[k]);
            nb_tensor_release(&out[k]);
        }
    }
    if (sets == 0 && r->kind == RES_PASS) {
        r->kind = RES_FAIL;
        snprintf(r->reason, sizeof r->reason, "no test_data_set_0");
    }
    nb_onnx_free(m);
}

/* run_test in a child process; a crash or a sanitizer abort is a result too. */
static void run_isolated(const char *dir, const char *name, test_result *r)
{
    memset(r, 0, sizeof(*r));
    int fd[2];
    fflush(NULL);
    pid_t pid = pipe(fd) == 0 ? fork() : -1;
    if (pid == 0) {
        close(fd[0]);
        test_result mine = {0};
        run_test(dir, name, &mine);
        ssize_t w = write(fd[1], &mine, sizeof mine);
        exit(w == (ssize_t)sizeof mine ? 0 : 3); /* exit, not _exit: LeakSanitizer runs */
    }
    if (pid < 0) { /* no fork: run in process */
        run_test(dir, name, r);
        return;
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof(*r)) {
        ssize_t k = read(fd[0], (char *)r + got, sizeof(*r) - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got != sizeof(*r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char op[64];
        snprintf(op, sizeof op, "%s", got == sizeof(*r) ? r->op : "");
        if (!op[0])
            test_op(name, NULL, NULL, op, sizeof op);
        memset(r, 0, sizeof(*r));
        r->kind = RES_CRASH;
        snprintf(r->op, sizeof r->op, "%s", op);
        if (WIFSIGNALED(status))
            snprintf(r->reason, sizeof r->reason, "crashed (signal %d)", WTERMSIG(status));
        else
            snprintf(r->reason, sizeof r->reason, "crashed (exit status %d)", WEXITSTATUS(status));
    }
}

typedef struct op_row {
    char op[64];
    int n[4];
} op_row;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const op_row *)a)->op, ((const op_row *)b)->op);
}

/* The test directories under root (root itself when it has model.onnx). */
static int list_tests(const char *root, char ***out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.onnx", root);
    char **v = NULL;
    int n = 0, cap = 0;
    if (is_file(path)) {
        v = malloc(sizeof(char *));
        if (v && (v[0] = strdup(root)))
            n = 1;
        *out = v;
        return n;
    }
    DIR *d = opendir(root);
    if (!d) {
        *out = NULL;
        return -1;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s/model.onnx", root, e->d_name);
        if (!is_file(path))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nv = realloc(v, (size_t)cap * sizeof(char *));
            if (!nv)
                break;
            v = nv;
        }
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        if ((v[n] = strdup(path)))
            n++;
    }
    closedir(d);
    if (n)
        qsort(v, (size_t)n, sizeof(char *), cmp_str);
    *out = v;
    return n;
}

int cmd_onnx_conformance(int argc, char **argv)
{
    if (argc < 1)
        return cli_usage_error("conformance: no test directory given");
    static const char *label[] = {"PASS", "FAIL", "SKIP", "CRASH"};
    int total[4] = {0}, n_rows = 0, cap_rows = 0;
    op_row *rows = NULL;
    for (int a = 0; a < argc; a++) {
        if (argv[a][0] == '-')
            return cli_usage_error("conformance: unknown flag '%s'", argv[a]);
        char **tests;
        int n = list_tests(argv[a], &tests);
        if (n < 0) {
            cli_error("conformance: cannot read directory '%s': %s", argv[a], strerror(errno));
            continue;
        }
        for (int t = 0; t < n; t++) {
            const char *name = strrchr(tests[t], '/') ? strrchr(tests[t], '/') + 1 : tests[t];
            test_result r;
            run_isolated(tests[t], name, &r);
            total[r.kind]++;
            if (r.kind != RES_PASS)
                printf("%-5s %s: %s\n", label[r.kind], name, r.reason);
            int j = 0;
            while (j < n_rows && strcmp(rows[j].op, r.op) != 0)
                j++;
            if (j == n_rows) {
                if (n_rows == cap_rows) {
                    cap_rows = cap_rows ? 2 * cap_rows : 128;
                    op_row *nr = realloc(rows, (size_t)cap_rows * sizeof(*rows));
                    if (!nr) {
                        cli_error("conformance: out of memory");
                        return 1;
                    }
                    rows = nr;
                }
                memset(&rows[n_rows], 0, sizeof(*rows));
                snprintf(rows[n_rows++].op, sizeof rows->op, "%s", r.op);
            }
            rows[j].n[r.kind]++;
            free(tests[t]);
        }
        free(tests);
    }
    if (n_rows)
        qsort(rows, (size_t)n_rows, sizeof(*rows), cmp_row);
    printf("\n%-28s %7s %7s %7s %7s\n", "op", "passed", "failed", "skipped", "crashed");
    for (int j = 0; j < n_rows; j++)
        printf("%-28s %7d %7d %7d %7d\n", rows[j].op, rows[j].n[RES_PASS], rows[j].n[RES_FAIL],
               rows[j].n[RES_SKIP], rows[j].n[RES_CRASH]);
    free(rows);
    int all = total[0] + total[1] + total[2] + total[3];
    printf("\n%d tests, %.1f%% passed; %d crashed (counted as failed)\n", all,
           all ? 100.0 * total[RES_PASS] / all : 0.0, total[RES_CRASH]);
    printf("%d passed, %d failed, %d skipped\n", total[RES_PASS],
           total[RES_FAIL] + total[RES_CRASH], total[RES_SKIP]);
    return 0;
}
