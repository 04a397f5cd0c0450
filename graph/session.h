/* Compile and run.
 *
 * nb_compile turns wanted outputs into a plan: the tape (needed nodes in
 * execution order, each with its kernel) and a memory plan (an offset in one
 * arena per value, buffers reused once their last reader has run). A plan is
 * read-only after compile and can be shared by threads; each thread runs it
 * through its own session, which owns an arena.
 *
 * The plan refers to the graph's parameters and constants in place, so the
 * graph must outlive its plans, and parameter updates (an optimizer step) are
 * seen by the next run.
 */
#ifndef NB_SESSION_H
#define NB_SESSION_H

#include "graph/graph.h"
#include "kernels/backend.h"

typedef struct nb_plan nb_plan;
typedef struct nb_session nb_session;

/* backend NULL: the CPU backend. On failure returns NULL with the message in
 * nb_last_error() (and the graph's status if the graph was already failed). */
nb_plan *nb_compile(nb_graph *g, int n_out, nb_node *const *outputs, const nb_backend *backend);
void nb_plan_free(nb_plan *p);

int nb_plan_num_entries(const nb_plan *p); /* kernel calls per run */
size_t nb_plan_arena_bytes(const nb_plan *p);
/* Sum of the sizes of all planned values: what a plan without reuse would need. */
size_t nb_plan_unshared_bytes(const nb_plan *p);

nb_session *nb_session_new(const nb_plan *p); /* NULL on allocation failure */
void nb_session_free(nb_session *s);

/* Copy a value into an INPUT node's slot; shape and dtype must match exactly. */
nb_status nb_session_feed(nb_session *s, const nb_node *input, const nb_tensor *value);
nb_status nb_session_feed_name(nb_session *s, const char *name, const nb_tensor *value);
/* Raw bytes; nbytes must equal the input's size. */
nb_status nb_session_feed_data(nb_session *s, const nb_node *input, const void *data,
                               size_t nbytes);

/* Run the tape. Fails (naming the input) if an input was never fed. */
nb_status nb_session_run(nb_session *s);

/* Completed runs; the next run's index, from which dropout masks are drawn
 * (a mask is a function of the graph's seed, the run index and the element).
 * A resumed training run restores it so its masks continue the sequence. */
uint64_t nb_session_runs(const nb_session *s);
void nb_session_set_runs(nb_session *s, uint64_t runs);

/* Per-op timing. Off by default (a run then reads no clock); when on, each
 * run adds every tape entry's wall time to the entry's total. Turning it on
 * clears the totals. */
nb_status nb_session_set_profiling(nb_session *s, bool on);
typedef struct nb_profile_entry {
    const nb_node *node; /* the node the entry computes (its name, shape) */
    nb_op op;            /* what the entry runs: the node's op, or a fusion
                            ending at the node (graph/fuse.c) */
    double seconds;      /* summed over the profiled runs */
    uint64_t runs;
} nb_profile_entry;
/* The tape's entries in run order with their totals; returns the entry
 * count (fills at most max; 0 when profiling was never on). */
int nb_session_profile(const nb_session *s, nb_profile_entry *out, int max);

/* A view of an output (or input) value after a run. It holds a reference, so
 * it stays valid after nb_session_free, but the next run overwrites it:
 * nb_tensor_contiguous() it to keep it. Release with nb_tensor_release. */
nb_status nb_session_fetch(nb_session *s, const nb_node *n, nb_tensor *out);
nb_status nb_session_fetch_name(nb_session *s, const char *name, nb_tensor *out);

#endif
