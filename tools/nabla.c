/* The nabla command.
 *
 *   nabla --version | help | ops
 *   nabla train mlp [--data DIR] [--epochs N] [--batch N] [--lr X] ...
 *
 * Errors go to stderr as "nabla: <message>"; the exit status is 0 on success,
 * 1 when the work failed and 2 for a usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nabla.h"

#define EXIT_USAGE 2
#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static const char USAGE[] =
    "usage: nabla <command> [options]\n"
    "\n"
    "commands:\n"
    "  train MODEL [flags]  train MODEL on Fashion-MNIST, then report test accuracy\n"
    "  ops                  list the ops of the engine\n"
    "  help                 show this text\n"
    "  --version            print the version\n"
    "\n"
    "models:\n"
    "  mlp                  784-256-128-10 perceptron with ReLU (sizes via --hidden)\n"
    "\n"
    "train flags (--flag VALUE or --flag=VALUE):\n"
    "  --data DIR           dataset directory (default " DEFAULT_DATA ")\n"
    "  --epochs N           passes over the training set (default 5)\n"
    "  --batch N            training batch size (default 128)\n"
    "  --eval-batch N       batch size of the forward-only test plan (default 1000)\n"
    "  --optim NAME         adam or sgd (default adam)\n"
    "  --lr X               learning rate (default 0.001 for adam, 0.05 for sgd)\n"
    "  --momentum X         sgd momentum (default 0.9)\n"
    "  --wd X               L2 weight decay (default 0)\n"
    "  --seed N             seed of the initialisation and the shuffling (default 0)\n"
    "  --threads N          CPU threads (default: all, or NABLA_NUM_THREADS)\n"
    "  --hidden A,B,...     hidden layer sizes of the mlp (default 256,128)\n";

/* Print "nabla: <message>" to stderr. */
static void print_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void print_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nabla: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A usage error: the message, a pointer to help, exit status 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nabla: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nrun 'nabla help' for usage\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* ---- train options ------------------------------------------------------ */

typedef struct train_opts {
    const char *model, *data, *optim;
    int64_t epochs, batch, eval_batch, threads;
    double lr, momentum, wd;
    uint64_t seed;
    int n_hidden;
    int64_t hidden[NB_MLP_MAX_LAYERS - 1];
} train_opts;

typedef enum { ARG_STR, ARG_COUNT, ARG_U64, ARG_POS_REAL, ARG_REAL01, ARG_NONNEG_REAL, ARG_SIZES } arg_kind;

typedef struct flag_spec {
    const char *name;
    arg_kind kind;
    size_t offset; /* of the field in train_opts */
} flag_spec;

#define FLAG(n, k, field) {n, k, offsetof(train_opts, field)}
static const flag_spec TRAIN_FLAGS[] = {
    FLAG("--data", ARG_STR, data),           FLAG("--epochs", ARG_COUNT, epochs),
    FLAG("--batch", ARG_COUNT, batch),       FLAG("--eval-batch", ARG_COUNT, eval_batch),
    FLAG("--optim", ARG_STR, optim),         FLAG("--lr", ARG_POS_REAL, lr),
    FLAG("--momentum", ARG_REAL01, momentum), FLAG("--wd", ARG_NONNEG_REAL, wd),
    FLAG("--seed", ARG_U64, seed),           FLAG("--threads", ARG_COUNT, threads),
    FLAG("--hidden", ARG_SIZES, hidden),
};
#define N_TRAIN_FLAGS (int)(sizeof(TRAIN_FLAGS) / sizeof(TRAIN_FLAGS[0]))

/* A whole-string unsigned decimal integer, at least 1 unless allow_zero, at
 * most max (any u64 when max is 0). */
static bool parse_uint(const char *s, uint64_t max, bool allow_zero, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || (!allow_zero && v == 0) || (max && v > max))
        return false;
    *out = v;
    return true;
}

/* A whole-string finite real number. */
static bool parse_real(const char *s, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* "256,128" into sizes (each in [1, 2^31)); returns the count or -1. */
static int parse_sizes(const char *s, int64_t *sizes, int max)
{
    int n = 0;
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (n == max || !parse_uint(tok, INT32_MAX, false, &v))
            return -1;
        sizes[n++] = (int64_t)v;
    }
    /* strtok skips empty pieces: insist on exactly n-1 commas */
    int commas = 0;
    for (const char *p = s; *p; p++)
        commas += *p == ',';
    return n > 0 && commas == n - 1 ? n : -1;
}

/* Store one flag's value; false when it does not parse. */
static bool set_flag(train_opts *o, const flag_spec *f, const char *v)
{
    void *dst = (char *)o + f->offset;
    uint64_t u;
    double d;
    switch (f->kind) {
    case ARG_STR:
        *(const char **)dst = v;
        return *v != '\0';
    case ARG_COUNT:
        if (!parse_uint(v, INT32_MAX, false, &u))
            return false;
        *(int64_t *)dst = (int64_t)u;
        return true;
    case ARG_U64:
        if (!parse_uint(v, 0, true, &u))
            return false;
        *(uint64_t *)dst = u;
        return true;
    case ARG_POS_REAL:
    case ARG_REAL01:
    case ARG_NONNEG_REAL:
        if (!parse_real(v, &d) || d < 0 || (f->kind == ARG_POS_REAL && d == 0) ||
            (f->kind == ARG_REAL01 && d >= 1))
            return false;
        *(double *)dst = d;
        return true;
    case ARG_SIZES:
        o->n_hidden = parse_sizes(v, o->hidden, NB_MLP_MAX_LAYERS - 1);
        return o->n_hidden > 0;
    }
    return false;
}

/* What a flag's value must be, for its error message. */
static const char *kind_wants(arg_kind k)
{
    switch (k) {
    case ARG_STR: return "a non-empty string";
    case ARG_COUNT: return "a positive integer";
    case ARG_U64: return "a non-negative integer";
    case ARG_POS_REAL: return "a positive number";
    case ARG_REAL01: return "a number in [0, 1)";
    case ARG_NONNEG_REAL: return "a non-negative number";
    case ARG_SIZES: return "comma-separated positive integers, e.g. 256,128";
    }
    return "?";
}

/* Parse "--flag VALUE" / "--flag=VALUE" pairs; returns 0, or 2 after printing
 * a usage error that names the flag. */
static int parse_train_flags(int argc, char **argv, train_opts *o, bool *lr_given)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (strncmp(arg, "--", 2) != 0)
            return usage_error("train: unexpected argument '%s'", arg);
        const flag_spec *f = NULL;
        for (int k = 0; k < N_TRAIN_FLAGS; k++)
            if (strlen(TRAIN_FLAGS[k].name) == len && strncmp(arg, TRAIN_FLAGS[k].name, len) == 0)
                f = &TRAIN_FLAGS[k];
        if (!f)
            return usage_error("train: unknown flag '%.*s'", (int)len, arg);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v)
            return usage_error("train: %s needs a value", f->name);
        if (!set_flag(o, f, v))
            return usage_error("train: %s: '%s' is not %s", f->name, v, kind_wants(f->kind));
        if (strcmp(f->name, "--lr") == 0)
            *lr_given = true;
    }
    if (strcmp(o->optim, "adam") != 0 && strcmp(o->optim, "sgd") != 0)
        return usage_error("train: --optim: '%s' is not adam or sgd", o->optim);
    return 0;
}

/* ---- training ----------------------------------------------------------- */

/* Everything a training run owns, freed by train_state_free. */
typedef struct train_state {
    nb_dataset train, test;
    nb_graph *g;
    nb_mlp mlp;
    nb_node *params[2 * NB_MLP_MAX_LAYERS];
    int n_params;
    nb_classifier clf;
    nb_optim *optim;
    nb_batcher batcher;
} train_state;

static void train_state_free(train_state *t)
{
    nb_batcher_free(&t->batcher);
    nb_optim_free(t->optim);
    nb_classifier_free(&t->clf);
    nb_graph_free(t->g);
    nb_dataset_free(&t->train);
    nb_dataset_free(&t->test);
}

/* Load both splits. */
static nb_status load_data(const train_opts *o, train_state *t)
{
    nb_status s = nb_fashion_mnist_load(o->data, true, &t->train);
    if (s == NB_OK)
        s = nb_fashion_mnist_load(o->data, false, &t->test);
    return s;
}

/* Build the MLP features-hidden...-classes, initialise it like PyTorch,
 * and set up the classifier, the optimizer and the batcher. */
static nb_status build_model(const train_opts *o, train_state *t)
{
    int64_t sizes[NB_MLP_MAX_LAYERS + 1];
    int n = 0;
    sizes[n++] = t->train.features;
    for (int i = 0; i < o->n_hidden; i++)
        sizes[n++] = o->hidden[i];
    sizes[n++] = t->train.classes;
    if (!(t->g = nb_graph_new()))
        return nb_error(NB_ERR_ALLOC, "out of memory");
    nb_status s = nb_mlp_make(t->g, n, sizes, NB_F32, &t->mlp);
    if (s != NB_OK)
        return s;
    nb_rng rng;
    nb_rng_init(&rng, o->seed);
    if ((s = nb_mlp_reset(&t->mlp, &rng)) != NB_OK)
        return s;
    t->n_params = nb_mlp_params(&t->mlp, t->params);
    s = nb_classifier_init(&t->clf, t->g, &t->mlp, nb_mlp_apply, t->n_params, t->params, NB_F32,
                           t->train.features, t->train.classes);
    if (s != NB_OK)
        return s;
    t->optim = strcmp(o->optim, "sgd") == 0
                   ? nb_sgd_new(t->n_params, t->params, o->lr, o->momentum, o->wd)
                   : nb_adam_new(t->n_params, t->params, o->lr, 0.9, 0.999, 1e-8, o->wd);
    if (!t->optim)
        return NB_ERR_ARG;
    /* the shuffling stream is keyed apart from the initialisation's */
    return nb_batcher_init(&t->batcher, t->train.n, o->batch, true, false,
                           o->seed ^ 0x9E3779B97F4A7C15ull);
}

/* "784-256-128-10" into buf. */
static const char *layer_sizes(const nb_mlp *m, char *buf, size_t size)
{
    int w = snprintf(buf, size, "%lld", (long long)m->layers[0].in);
    for (int i = 0; i < m->n_layers && w > 0 && (size_t)w < size; i++)
        w += snprintf(buf + w, size - (size_t)w, "-%lld", (long long)m->layers[i].out);
    return buf;
}

static void print_header(const train_opts *o, const train_state *t)
{
    char sizes[256];
    printf("nabla %s: train mlp %s (%lld parameters) on Fashion-MNIST\n", NABLA_VERSION,
           layer_sizes(&t->mlp, sizes, sizeof(sizes)), (long long)nb_mlp_numel(&t->mlp));
    printf("data %s: %lld train, %lld test; %s lr %g, batch %lld, %lld epochs, seed %llu, "
           "%d threads\n",
           o->data, (long long)t->train.n, (long long)t->test.n, o->optim, o->lr,
           (long long)o->batch, (long long)o->epochs, (unsigned long long)o->seed,
           nb_get_num_threads());
    printf("%5s %10s %9s %9s %8s %8s %10s %7s\n", "epoch", "train_loss", "train_acc", "test_loss",
           "test_acc", "time_s", "samples/s", "eval_s");
    fflush(stdout);
}

/* Train for o->epochs, printing one line per epoch and the final accuracy. */
static nb_status train_loop(const train_opts *o, train_state *t)
{
    nb_pass_stats tr, te = {0};
    for (int64_t e = 1; e <= o->epochs; e++) {
        nb_status s = nb_classifier_train_epoch(&t->clf, &t->train, &t->batcher, t->optim, &tr);
        if (s == NB_OK)
            s = nb_classifier_evaluate(&t->clf, &t->test, o->eval_batch, &te);
        if (s != NB_OK)
            return s;
        printf("%5lld %10.4f %9.4f %9.4f %8.4f %8.2f %10.0f %7.2f\n", (long long)e, tr.loss,
               tr.accuracy, te.loss, te.accuracy, tr.seconds, (double)tr.samples / tr.seconds,
               te.seconds);
        fflush(stdout);
    }
    printf("test accuracy: %.4f\n", te.accuracy);
    return NB_OK;
}

/* nabla train MODEL [flags] */
static int cmd_train(int argc, char **argv)
{
    if (argc < 1 || strncmp(argv[0], "--", 2) == 0) {
        if (argc >= 1 && (strcmp(argv[0], "--help") == 0)) {
            fputs(USAGE, stdout);
            return 0;
        }
        return usage_error("train: which model? (known: mlp)");
    }
    if (strcmp(argv[0], "mlp") != 0)
        return usage_error("train: unknown model '%s' (known: mlp)", argv[0]);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        }
    train_opts o = {.model = argv[0], .data = DEFAULT_DATA, .optim = "adam", .epochs = 5,
                    .batch = 128, .eval_batch = 1000, .lr = 0, .momentum = 0.9, .wd = 0,
                    .seed = 0, .threads = 0, .n_hidden = 2, .hidden = {256, 128}};
    bool lr_given = false;
    int rc = parse_train_flags(argc - 1, argv + 1, &o, &lr_given);
    if (rc)
        return rc;
    if (!lr_given)
        o.lr = strcmp(o.optim, "sgd") == 0 ? 0.05 : 1e-3;
    if (o.threads > 0)
        nb_set_num_threads((int)o.threads);
    train_state t;
    memset(&t, 0, sizeof(t));
    nb_status s = load_data(&o, &t);
    if (s == NB_OK && (s = build_model(&o, &t)) == NB_OK) {
        print_header(&o, &t);
        s = train_loop(&o, &t);
    }
    if (s != NB_OK) {
        print_error("%s", nb_last_error());
        if (s == NB_ERR_IO && strcmp(o.data, DEFAULT_DATA) == 0)
            print_error("install the dataset-fashion-mnist package, or pass --data DIR");
    }
    train_state_free(&t);
    return s == NB_OK ? 0 : 1;
}

/* nabla ops: every op name, one a line. */
static int cmd_ops(void)
{
    for (int i = 0; i < NB_OP_COUNT; i++)
        puts(nb_op_name((nb_op)i));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("no command given");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("nabla %s\n", NABLA_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "ops") == 0 && argc == 2)
        return cmd_ops();
    if (strcmp(cmd, "ops") == 0)
        return usage_error("ops: unexpected argument '%s'", argv[2]);
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", cmd);
}
