/* hopwatch report's accumulation in C: the accelerator for hopwatch.report.scan.
 *
 * One function, add(stats, record): what the scanner's hot loop does with a
 * plain record (no optional values, timestamp in UTC) once msgspec has
 * decoded it: its numbers into the endpoint's accumulators, its hop time and
 * overhead into the two sketches, its (status, interface, pinned_by) into
 * raw_status, each sites entry's ms and overhead_ms into raw_sites. The
 * reference is the pure-Python block in Scanner.feed (scan.py), statement for
 * statement: the same Python objects are updated with the same operations in
 * the same order (PyNumber_Add on the same values, libm's log for the sketch
 * bucket, as math.log), so both give bit-identical partials, which a test
 * checks. Rare branches (a line without overhead_ms, a new slowest request,
 * hop_tax_us) call the same EndpointStats methods the Python path calls.
 *
 * Measured (docs/performance.md, Report): the Python block costs about 5 us
 * per line of a realistic log, as much as msgspec's decoding; this about 1.
 * Runs with the GIL held (CPython 3.11-3.13).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <structmember.h>

#if PY_VERSION_HEX < 0x030B0000
#error "hopwatch.report._accumulate needs CPython 3.11 or newer"
#endif

/* Indices into EndpointStats' lists and the sketch constants, from configure(). */
static Py_ssize_t A_DURATION, A_HOP_MS, A_WAIT, A_HOPS, A_HOPS_MAX, A_SLOWEST_FLOOR;
static Py_ssize_t A_OVERHEAD, A_WORK;
static Py_ssize_t C_SYNC_TO_ASYNC, C_ASYNC_TO_SYNC, C_THREADS, C_THREADS_MAX;
static Py_ssize_t C_NEW_LOOPS, C_NEW_LOOP_RECORDS, C_DEPTH_MAX;
static double MIN_VALUE, INV_LN_GAMMA, SHIFT;
static PyObject *timestamp_text = NULL; /* parse.timestamp_text */
static int configured = 0;

static PyObject *one = NULL;        /* 1 */
static PyObject *zero = NULL;       /* 0 */
static PyObject *one_float = NULL;  /* 1.0 */
static PyObject *zero_float = NULL; /* 0.0 */

/* interned names */
static PyObject *s_acc, *s_sketch, *s_overhead_sketch, *s_counters, *s_raw_status, *s_pinned;
static PyObject *s_add_site, *s_concurrency, *s_bins, *s_max, *s_zeros;
static PyObject *s_lacks_overhead, *s_offer_slowest, *s_add_tax;
static PyObject *s_hop_ms, *s_duration_ms, *s_wait_ms, *s_hops, *s_overhead_ms, *s_work_ms;
static PyObject *s_sync_to_async, *s_async_to_sync, *s_threads, *s_new_loops, *s_max_depth;
static PyObject *s_status, *s_interface, *s_pinned_by, *s_pinned_ms, *s_request_id;
static PyObject *s_timestamp, *s_hop_tax_us, *s_db_connections, *s_max_in_flight;
static PyObject *s_concurrent_ms, *s_sites, *s_site, *s_kind, *s_direction, *s_call_site;
static PyObject *s_count, *s_ms;

/* Where a type keeps the fields read here: msgspec Structs and __slots__ classes hold
 * each field in a slot at a fixed offset (a member descriptor), so it is read
 * there, at a fraction of getattr's cost; anything else goes through getattr. One
 * type per layout is remembered (records of a block share their decoder's type). */
#define MAX_FIELDS 24
typedef struct {
    PyTypeObject *type; /* strong reference, or NULL */
    int count;
    PyObject **names;
    Py_ssize_t offsets[MAX_FIELDS]; /* -1: use getattr */
} Layout;

static void
learn_layout(Layout *layout, PyTypeObject *type)
{
    for (int i = 0; i < layout->count; i++) {
        PyObject *descr = _PyType_Lookup(type, layout->names[i]); /* borrowed */
        layout->offsets[i] = -1;
        if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == T_OBJECT_EX || member->type == T_OBJECT)
                layout->offsets[i] = member->offset;
        }
    }
    Py_INCREF(type);
    Py_XDECREF(layout->type);
    layout->type = type;
}

/* obj's field i of the layout: a new reference, or NULL with an exception. */
static inline PyObject *
field(Layout *layout, PyObject *obj, int i)
{
    if (Py_TYPE(obj) != layout->type)
        learn_layout(layout, Py_TYPE(obj));
    Py_ssize_t offset = layout->offsets[i];
    if (offset >= 0) {
        PyObject *value = *(PyObject **)((char *)obj + offset);
        if (value != NULL) {
            Py_INCREF(value);
            return value;
        }
    }
    return PyObject_GetAttr(obj, layout->names[i]); /* raises AttributeError when unset */
}

/* list[i] += value (any numbers, as Python's +=). 0 ok, -1 error.
 *
 * A float plus a float or an int is what Python computes (float.__add__ turns the
 * int into a double the same way); and a float that only this list refers to
 * (reference count 1: the accumulators' own, never handed out while we run) is
 * updated in place rather than replaced, which saves an allocation per add. */
static int
add_to(PyObject *list, Py_ssize_t i, PyObject *value)
{
    if (!PyList_Check(list) || i >= PyList_GET_SIZE(list)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: an accumulator is not the expected list");
        return -1;
    }
    PyObject *item = PyList_GET_ITEM(list, i);
    if (PyFloat_CheckExact(item) && (PyFloat_CheckExact(value) || PyLong_CheckExact(value))) {
        double addend = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value)
                                                  : PyLong_AsDouble(value);
        if (addend == -1.0 && PyErr_Occurred())
            return -1;
        double total = PyFloat_AS_DOUBLE(item) + addend;
        if (Py_REFCNT(item) == 1) {
            ((PyFloatObject *)item)->ob_fval = total;
            return 0;
        }
        PyObject *fresh = PyFloat_FromDouble(total);
        if (fresh == NULL)
            return -1;
        PyList_SetItem(list, i, fresh);
        return 0;
    }
    PyObject *sum = PyNumber_Add(item, value);
    if (sum == NULL)
        return -1;
    PyList_SetItem(list, i, sum); /* steals sum, releases the old item */
    return 0;
}

/* if value > list[i]: list[i] = value. 0 ok, -1 error. */
static int
max_to(PyObject *list, Py_ssize_t i, PyObject *value)
{
    if (!PyList_Check(list) || i >= PyList_GET_SIZE(list)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: an accumulator is not the expected list");
        return -1;
    }
    int greater = PyObject_RichCompareBool(value, PyList_GET_ITEM(list, i), Py_GT);
    if (greater < 0)
        return -1;
    if (greater) {
        Py_INCREF(value);
        PyList_SetItem(list, i, value);
    }
    return 0;
}

static PyObject *sketch_names[3];
static Layout sketch_layout = {NULL, 3, sketch_names, {0}};

/* Sketch.add(value), for a float value. 0 ok, -1 error. */
static int
sketch_add(PyObject *sketch, PyObject *value)
{
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    if (v >= MIN_VALUE) {
        PyObject *bins = field(&sketch_layout, sketch, 0);
        if (bins == NULL)
            return -1;
        Py_buffer view;
        if (PyObject_GetBuffer(bins, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
            Py_DECREF(bins);
            return -1;
        }
        Py_ssize_t index = (Py_ssize_t)(log(v) * INV_LN_GAMMA + SHIFT);
        int ok = view.itemsize == 8 && view.format != NULL && view.format[0] == 'Q' &&
                 view.format[1] == '\0' && index >= 0 && index < view.len / 8;
        if (ok)
            ((unsigned long long *)view.buf)[index] += 1;
        PyBuffer_Release(&view);
        Py_DECREF(bins);
        if (!ok) {
            PyErr_SetString(PyExc_IndexError, "hopwatch: a sketch bucket out of range");
            return -1;
        }
        PyObject *top = field(&sketch_layout, sketch, 1);
        if (top == NULL)
            return -1;
        int greater = PyObject_RichCompareBool(value, top, Py_GT);
        Py_DECREF(top);
        if (greater < 0)
            return -1;
        if (greater && PyObject_SetAttr(sketch, s_max, value) < 0)
            return -1;
        return 0;
    }
    PyObject *zeros = field(&sketch_layout, sketch, 2);
    if (zeros == NULL)
        return -1;
    PyObject *more = PyNumber_Add(zeros, one);
    Py_DECREF(zeros);
    if (more == NULL)
        return -1;
    int status = PyObject_SetAttr(sketch, s_zeros, more);
    Py_DECREF(more);
    return status;
}

/* The record's fields, read once; every pointer a new reference (or NULL). */
enum {
    F_HOP_MS, F_DURATION, F_WAIT, F_HOPS, F_OVERHEAD, F_WORK, F_S2A, F_A2S, F_THREADS,
    F_NEW_LOOPS, F_MAX_DEPTH, F_STATUS, F_INTERFACE, F_PINNED_BY, F_PINNED_MS, F_HOP_TAX,
    F_DB, F_IN_FLIGHT, F_CONCURRENT, F_SITES, F_COUNT
};
/* The stats' fields. */
enum { S_ACC, S_SKETCH, S_OVH_SKETCH, S_COUNTERS, S_RAW_STATUS, S_PINNED, S_SITES,
       S_CONCURRENCY, S_COUNT };
static PyObject *record_names[F_COUNT];
static Layout record_layout = {NULL, F_COUNT, record_names, {0}};
static PyObject *stats_names[S_COUNT];
static Layout stats_layout = {NULL, S_COUNT, stats_names, {0}};
static PyObject *site_names[7];
static Layout site_layout = {NULL, 7, site_names, {0}};

/* One sites entry (site, kind, direction, call_site, count, ms, overhead_ms) into the
 * stats' sites dict. 0 ok, -1 error. */
static int
add_site(PyObject *stats, PyObject *sites, PyObject **part)
{
    if (!PyDict_Check(sites)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: sites is not a dict");
        return -1;
    }
    PyObject *key = PyTuple_Pack(4, part[0], part[1], part[2], part[3]);
    if (key == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(sites, key); /* borrowed */
    int status = -1;
    PyObject *measured = part[6] != Py_None ? one : zero;
    PyObject *overhead = part[6] != Py_None ? part[6] : zero_float;
    if (entry == NULL) {
        if (!PyErr_Occurred()) { /* a new cause: EndpointStats._add_site decides */
            PyObject *done = PyObject_CallMethodObjArgs(stats, s_add_site, key, one, part[4],
                                                        part[5], overhead, measured, NULL);
            status = done == NULL ? -1 : 0;
            Py_XDECREF(done);
        }
    }
    else if (PyList_Check(entry) && PyList_GET_SIZE(entry) >= 5) {
        Py_INCREF(entry); /* kept alive while its items are replaced */
        status = (add_to(entry, 0, one) < 0 || add_to(entry, 1, part[4]) < 0 ||
                  add_to(entry, 2, part[5]) < 0 || add_to(entry, 3, overhead) < 0 ||
                  add_to(entry, 4, measured) < 0)
                     ? -1
                     : 0;
        Py_DECREF(entry);
    }
    else
        PyErr_SetString(PyExc_TypeError, "hopwatch: a sites entry is not a list of 5");
    Py_DECREF(key);
    return status;
}

/* The block itself: 0 ok, -1 error. */
static int
add_plain(PyObject *stats, PyObject *record)
{
    PyObject *f[F_COUNT] = {NULL};
    PyObject *s[S_COUNT] = {NULL};
    int result = -1;
    PyObject *tmp = NULL;
    for (int i = 0; i < F_COUNT; i++) {
        if ((f[i] = field(&record_layout, record, i)) == NULL)
            goto done;
    }
    for (int i = 0; i < S_COUNT; i++) {
        if ((s[i] = field(&stats_layout, stats, i)) == NULL)
            goto done;
    }
    PyObject *acc = s[S_ACC];
    if (add_to(acc, A_DURATION, f[F_DURATION]) < 0 || add_to(acc, A_HOP_MS, f[F_HOP_MS]) < 0 ||
        add_to(acc, A_WAIT, f[F_WAIT]) < 0 || add_to(acc, A_HOPS, f[F_HOPS]) < 0 ||
        max_to(acc, A_HOPS_MAX, f[F_HOPS]) < 0)
        goto done;
    if (sketch_add(s[S_SKETCH], f[F_HOP_MS]) < 0)
        goto done;
    if (f[F_OVERHEAD] == Py_None) { /* a line from before overhead_ms was written */
        tmp = PyObject_CallMethodObjArgs(stats, s_lacks_overhead, f[F_DURATION], f[F_WAIT],
                                         f[F_HOPS], NULL);
        if (tmp == NULL)
            goto done;
        Py_CLEAR(tmp);
    }
    else {
        if (add_to(acc, A_OVERHEAD, f[F_OVERHEAD]) < 0)
            goto done;
        int work = PyObject_IsTrue(f[F_WORK]);
        if (work < 0 || (work && add_to(acc, A_WORK, f[F_WORK]) < 0))
            goto done;
        if (sketch_add(s[S_OVH_SKETCH], f[F_OVERHEAD]) < 0)
            goto done;
    }
    PyObject *c = s[S_COUNTERS];
    if (add_to(c, C_SYNC_TO_ASYNC, f[F_S2A]) < 0 || add_to(c, C_ASYNC_TO_SYNC, f[F_A2S]) < 0 ||
        add_to(c, C_THREADS, f[F_THREADS]) < 0 || max_to(c, C_THREADS_MAX, f[F_THREADS]) < 0)
        goto done;
    int loops = PyObject_IsTrue(f[F_NEW_LOOPS]);
    if (loops < 0 ||
        (loops && (add_to(c, C_NEW_LOOPS, f[F_NEW_LOOPS]) < 0 ||
                   add_to(c, C_NEW_LOOP_RECORDS, one) < 0)))
        goto done;
    if (max_to(c, C_DEPTH_MAX, f[F_MAX_DEPTH]) < 0)
        goto done;
    /* raw_status[(status, interface, pinned_by)] += 1 */
    if (!PyDict_Check(s[S_RAW_STATUS])) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: raw_status is not a dict");
        goto done;
    }
    PyObject *key = PyTuple_Pack(3, f[F_STATUS], f[F_INTERFACE], f[F_PINNED_BY]);
    if (key == NULL)
        goto done;
    PyObject *seen = PyDict_GetItemWithError(s[S_RAW_STATUS], key); /* borrowed */
    if (seen == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        goto done;
    }
    PyObject *counted = seen == NULL ? (Py_INCREF(one), one) : PyNumber_Add(seen, one);
    if (counted == NULL) {
        Py_DECREF(key);
        goto done;
    }
    int stored = PyDict_SetItem(s[S_RAW_STATUS], key, counted);
    Py_DECREF(key);
    Py_DECREF(counted);
    if (stored < 0)
        goto done;
    PyObject *pin = s[S_PINNED];
    if (f[F_PINNED_MS] == Py_None) { /* a line from before pinned_ms existed */
        if (add_to(pin, 1, one) < 0)
            goto done;
    }
    else {
        int pinned = PyObject_IsTrue(f[F_PINNED_MS]);
        if (pinned < 0 || (pinned && (add_to(pin, 0, f[F_PINNED_MS]) < 0 ||
                                      add_to(pin, 2, f[F_PINNED_MS]) < 0)))
            goto done;
    }
    if (!PyList_Check(acc) || A_SLOWEST_FLOOR >= PyList_GET_SIZE(acc)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: an accumulator is not the expected list");
        goto done;
    }
    int slow = PyObject_RichCompareBool(f[F_HOP_MS], PyList_GET_ITEM(acc, A_SLOWEST_FLOOR), Py_GT);
    if (slow < 0)
        goto done;
    if (slow) {
        PyObject *request_id = PyObject_GetAttr(record, s_request_id);
        PyObject *moment = request_id ? PyObject_GetAttr(record, s_timestamp) : NULL;
        PyObject *text = moment ? PyObject_CallOneArg(timestamp_text, moment) : NULL;
        tmp = text ? PyObject_CallMethodObjArgs(stats, s_offer_slowest, f[F_HOP_MS], request_id,
                                                text, NULL)
                   : NULL;
        Py_XDECREF(request_id);
        Py_XDECREF(moment);
        Py_XDECREF(text);
        if (tmp == NULL)
            goto done;
        Py_CLEAR(tmp);
    }
    if (f[F_HOP_TAX] != Py_None) {
        tmp = PyObject_CallMethodObjArgs(stats, s_add_tax, f[F_HOPS], f[F_HOP_TAX], one_float,
                                         f[F_DURATION], NULL);
        if (tmp == NULL)
            goto done;
        Py_CLEAR(tmp);
    }
    if (f[F_DB] != Py_None) { /* EndpointStats.add_concurrency */
        PyObject *con = s[S_CONCURRENCY];
        if (add_to(con, 0, one) < 0 || add_to(con, 1, f[F_DB]) < 0 || max_to(con, 2, f[F_DB]) < 0)
            goto done;
        if (f[F_IN_FLIGHT] != Py_None) {
            if (add_to(con, 3, one) < 0 || add_to(con, 4, f[F_IN_FLIGHT]) < 0 ||
                max_to(con, 5, f[F_IN_FLIGHT]) < 0)
                goto done;
            PyObject *concurrent = f[F_CONCURRENT];
            int truthy = PyObject_IsTrue(concurrent);
            if (truthy < 0)
                goto done;
            if (!truthy) { /* concurrent_ms or 0.0 */
                tmp = PyFloat_FromDouble(0.0);
                if (tmp == NULL)
                    goto done;
                concurrent = tmp;
            }
            int added = add_to(con, 6, concurrent);
            Py_CLEAR(tmp);
            if (added < 0)
                goto done;
        }
    }
    /* Each sites entry straight into stats.sites[(site, kind, direction, call_site)]:
     * [requests, count, ms, overhead_ms, requests with overhead_ms] (aggregate.S_*),
     * as EndpointStats._add_site does; a key not there yet goes through _add_site
     * itself (which keeps the number of causes bounded). The Python block files
     * entries in raw_sites and folds them in batches (math.fsum): the same numbers,
     * summed in another order, so their last bits may differ. */
    PyObject *sites = f[F_SITES];
    if (!PyList_Check(sites)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: sites is not a list");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sites); i++) {
        PyObject *site = PyList_GET_ITEM(sites, i);
        PyObject *part[7] = {NULL};
        int failed = 0;
        for (int j = 0; j < 7 && !failed; j++)
            failed = (part[j] = field(&site_layout, site, j)) == NULL;
        if (!failed)
            failed = add_site(stats, s[S_SITES], part) < 0;
        for (int j = 0; j < 7; j++)
            Py_XDECREF(part[j]);
        if (failed)
            goto done;
    }
    result = 0;
done:
    for (int i = 0; i < F_COUNT; i++)
        Py_XDECREF(f[i]);
    for (int i = 0; i < S_COUNT; i++)
        Py_XDECREF(s[i]);
    return result;
}

static PyObject *
accumulate(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(stats, record)");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "hopwatch.report._accumulate: configure() first");
        return NULL;
    }
    if (add_plain(args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Fields scan() reads besides the block's. */
enum { R_TIMESTAMP, R_SITES_DROPPED, R_SAMPLE_RATE, R_ERRORS, R_PROFILE, R_METHOD, R_ROUTE,
       R_VIEW, R_HOPS, R_SITES, R_COUNT };
static PyObject *line_names[R_COUNT];
static Layout line_layout = {NULL, R_COUNT, line_names, {0}};
static PyObject *s_tzinfo, *s_add_record, *s_sites_dropped, *s_sample_rate, *s_hopwatch_errors;
static PyObject *s_profile, *s_method, *s_route, *s_view;

/* One decoded record, as Scanner.feed's Python loop handles it when no filter, tap
 * or envelope is in play: 1 counted, 0 hand the line back to Python (a timestamp
 * out of range), -1 error. bounds: [first, last, hopwatch_errors]. */
static int
take_record(PyObject *record, PyObject *by_key, PyObject *bounds, PyObject *to_utc,
            PyObject *new_endpoint, PyObject *utc)
{
    PyObject *r[R_COUNT] = {NULL};
    int result = -1;
    PyObject *tz = NULL, *key = NULL, *stats = NULL, *tmp = NULL;
    for (int i = 0; i < R_COUNT; i++) {
        if ((r[i] = field(&line_layout, record, i)) == NULL)
            goto done;
    }
    if ((tz = PyObject_GetAttr(r[R_TIMESTAMP], s_tzinfo)) == NULL)
        goto done;
    if (tz != utc) { /* an offset: the same instant in UTC, or the line goes back */
        PyObject *moment = PyObject_CallOneArg(to_utc, r[R_TIMESTAMP]);
        if (moment == NULL)
            goto done;
        if (moment == Py_None) {
            Py_DECREF(moment);
            result = 0;
            goto done;
        }
        int set = PyObject_SetAttr(record, s_timestamp, moment);
        Py_DECREF(r[R_TIMESTAMP]);
        r[R_TIMESTAMP] = moment;
        if (set < 0)
            goto done;
    }
    /* optional values: (sites_dropped, sample_rate, hopwatch_errors, profile) == (0, 1.0, 0,
     * None), as scan._PLAIN */
    int plain = r[R_PROFILE] == Py_None;
    int equal;
    if (plain) {
        if ((equal = PyObject_RichCompareBool(r[R_SITES_DROPPED], zero, Py_EQ)) < 0)
            goto done;
        plain = equal;
    }
    if (plain) {
        if ((equal = PyObject_RichCompareBool(r[R_SAMPLE_RATE], one_float, Py_EQ)) < 0)
            goto done;
        plain = equal;
    }
    if (plain) {
        if ((equal = PyObject_RichCompareBool(r[R_ERRORS], zero, Py_EQ)) < 0)
            goto done;
        plain = equal;
    }
    if (!plain && add_to(bounds, 2, r[R_ERRORS]) < 0)
        goto done;
    PyObject *moment = r[R_TIMESTAMP];
    int earlier = PyObject_RichCompareBool(moment, PyList_GET_ITEM(bounds, 0), Py_LT);
    if (earlier < 0)
        goto done;
    if (earlier) {
        Py_INCREF(moment);
        PyList_SetItem(bounds, 0, moment);
    }
    int later = PyObject_RichCompareBool(moment, PyList_GET_ITEM(bounds, 1), Py_GT);
    if (later < 0)
        goto done;
    if (later) {
        Py_INCREF(moment);
        PyList_SetItem(bounds, 1, moment);
    }
    if ((key = PyTuple_Pack(3, r[R_METHOD], r[R_ROUTE], r[R_VIEW])) == NULL)
        goto done;
    stats = PyDict_GetItemWithError(by_key, key);
    if (stats != NULL)
        Py_INCREF(stats);
    else if (PyErr_Occurred() || (stats = PyObject_CallOneArg(new_endpoint, key)) == NULL)
        goto done;
    int hops = PyObject_IsTrue(r[R_HOPS]);
    if (hops < 0)
        goto done;
    if (!PyList_Check(r[R_SITES])) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: sites is not a list");
        goto done;
    }
    if (!plain || (hops && PyList_GET_SIZE(r[R_SITES]) == 0)) {
        /* sampled, profiled, sites lost or left out: the general accumulation */
        if ((tmp = PyObject_CallMethodObjArgs(stats, s_add_record, record, NULL)) == NULL)
            goto done;
    }
    else if (add_plain(stats, record) < 0)
        goto done;
    result = 1;
done:
    for (int i = 0; i < R_COUNT; i++)
        Py_XDECREF(r[i]);
    Py_XDECREF(tz);
    Py_XDECREF(key);
    Py_XDECREF(stats);
    Py_XDECREF(tmp);
    return result;
}

/* parse.MARKER and scan.PROCESS_MARKER (a test checks they agree). */
static const char MARKER[] = "hopwatch.request";
static const char PROCESS_MARKER[] = "hopwatch.process";

/* Whether needle occurs in haystack (memmem is not everywhere). */
static int
contains(const char *haystack, size_t length, const char *needle, size_t size)
{
    const char *end = haystack + length;
    while (length >= size) {
        const char *first = memchr(haystack, needle[0], length - size + 1);
        if (first == NULL)
            return 0;
        if (memcmp(first, needle, size) == 0)
            return 1;
        haystack = first + 1;
        length = (size_t)(end - haystack);
    }
    return 0;
}

/* scan(buffer, position, end, decode, errors, by_key, bounds, to_utc, new_endpoint, utc,
 *      max_line) -> (position, lines, records)
 *
 * Scanner.feed's loop over buffer[position:end] for the usual case (no marker
 * prefilter, no envelope, no filter, no tap): each line's JSON object (from its
 * first "{") decoded by ``decode``; a line without "{" counted as another line.
 * It returns at the first line Python must look at (too long, refused by the
 * decoder: another logger's JSON, a broken or new-valued line; a timestamp out of
 * range), its position first, having counted the lines before it. */
static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 11 arguments");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "hopwatch.report._accumulate: configure() first");
        return NULL;
    }
    PyObject *decode = args[3], *errors = args[4], *by_key = args[5], *bounds = args[6];
    PyObject *to_utc = args[7], *new_endpoint = args[8], *utc = args[9];
    Py_ssize_t position = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[10]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(by_key) || !PyList_Check(bounds) || PyList_GET_SIZE(bounds) != 3) {
        PyErr_SetString(PyExc_TypeError, "scan(): by_key must be a dict, bounds a list of 3");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (end > view.len)
        end = view.len;
    const char *buf = (const char *)view.buf;
    Py_ssize_t lines = 0, records = 0;
    int failed = 0;
    while (position < end) {
        const char *newline = memchr(buf + position, '\n', (size_t)(end - position));
        Py_ssize_t stop = newline != NULL ? newline - buf : end;
        if (stop - position > max_line)
            break;
        Py_ssize_t start = position;
        if (buf[start] != '{') { /* a prefix (container runtime, pod name) first */
            const char *brace = memchr(buf + start, '{', (size_t)(stop - start));
            if (brace == NULL) { /* an other line */
                lines++;
                position = stop + 1;
                continue;
            }
            start = brace - buf;
        }
        PyObject *line = PyMemoryView_FromMemory((char *)buf + start, stop - start, PyBUF_READ);
        if (line == NULL) {
            failed = 1;
            break;
        }
        PyObject *record = PyObject_CallOneArg(decode, line);
        Py_DECREF(line);
        if (record == NULL) {
            if (!PyErr_ExceptionMatches(errors)) {
                failed = 1;
                break;
            }
            PyErr_Clear();
            /* another logger's JSON (no marker, nor the process line's): an other line,
             * as the Python loop counts it; anything else is the Python loop's */
            size_t length = (size_t)(stop - start);
            if (contains(buf + start, length, MARKER, sizeof(MARKER) - 1) ||
                contains(buf + start, length, PROCESS_MARKER, sizeof(PROCESS_MARKER) - 1))
                break;
            lines++;
            position = stop + 1;
            continue;
        }
        int taken = take_record(record, by_key, bounds, to_utc, new_endpoint, utc);
        Py_DECREF(record);
        if (taken < 0) {
            failed = 1;
            break;
        }
        if (taken == 0)
            break;
        lines++;
        records++;
        position = stop + 1;
    }
    PyBuffer_Release(&view);
    if (failed)
        return NULL;
    return Py_BuildValue("(nnn)", position, lines, records);
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"indices", "min_value", "inv_ln_gamma", "shift",
                               "timestamp_text", NULL};
    PyObject *indices, *text;
    double shift;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!dddO", keywords, &PyDict_Type, &indices,
                                     &MIN_VALUE, &INV_LN_GAMMA, &shift, &text))
        return NULL;
    SHIFT = shift;
    struct {
        const char *name;
        Py_ssize_t *slot;
    } wanted[] = {
        {"A_DURATION", &A_DURATION}, {"A_HOP_MS", &A_HOP_MS}, {"A_WAIT", &A_WAIT},
        {"A_HOPS", &A_HOPS}, {"A_HOPS_MAX", &A_HOPS_MAX}, {"A_SLOWEST_FLOOR", &A_SLOWEST_FLOOR},
        {"A_OVERHEAD", &A_OVERHEAD}, {"A_WORK", &A_WORK}, {"C_SYNC_TO_ASYNC", &C_SYNC_TO_ASYNC},
        {"C_ASYNC_TO_SYNC", &C_ASYNC_TO_SYNC}, {"C_THREADS", &C_THREADS},
        {"C_THREADS_MAX", &C_THREADS_MAX}, {"C_NEW_LOOPS", &C_NEW_LOOPS},
        {"C_NEW_LOOP_RECORDS", &C_NEW_LOOP_RECORDS}, {"C_DEPTH_MAX", &C_DEPTH_MAX},
    };
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        PyObject *value = PyDict_GetItemString(indices, wanted[i].name);
        if (value == NULL) {
            PyErr_Format(PyExc_KeyError, "configure(): %s missing", wanted[i].name);
            return NULL;
        }
        Py_ssize_t index = PyLong_AsSsize_t(value);
        if (index == -1 && PyErr_Occurred())
            return NULL;
        if (index < 0) {
            PyErr_Format(PyExc_ValueError, "configure(): %s is negative", wanted[i].name);
            return NULL;
        }
        *wanted[i].slot = index;
    }
    Py_INCREF(text);
    Py_XDECREF(timestamp_text);
    timestamp_text = text;
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add", (PyCFunction)(void (*)(void))accumulate, METH_FASTCALL,
     "add(stats, record): add a plain record to an EndpointStats (see scan.py)."},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(...): Scanner.feed's loop for the usual case (see the C source)."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(indices, min_value, inv_ln_gamma, shift, timestamp_text)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "hopwatch.report._accumulate",
    "The report's per-record accumulation in C (see hopwatch.report.scan).", -1, methods,
};

#define INTERN(var, text)                                  \
    do {                                                   \
        if ((var = PyUnicode_InternFromString(text)) == NULL) \
            return NULL;                                   \
    } while (0)

PyMODINIT_FUNC
PyInit__accumulate(void)
{
    INTERN(s_acc, "acc");
    INTERN(s_sketch, "sketch");
    INTERN(s_overhead_sketch, "overhead_sketch");
    INTERN(s_counters, "counters");
    INTERN(s_raw_status, "raw_status");
    INTERN(s_pinned, "pinned");
    INTERN(s_add_site, "_add_site");
    INTERN(s_concurrency, "concurrency");
    INTERN(s_bins, "bins");
    INTERN(s_max, "max");
    INTERN(s_zeros, "zeros");
    INTERN(s_lacks_overhead, "lacks_overhead");
    INTERN(s_offer_slowest, "offer_slowest");
    INTERN(s_add_tax, "add_tax");
    INTERN(s_hop_ms, "hop_ms");
    INTERN(s_duration_ms, "duration_ms");
    INTERN(s_wait_ms, "wait_ms");
    INTERN(s_hops, "hops");
    INTERN(s_overhead_ms, "overhead_ms");
    INTERN(s_work_ms, "work_ms");
    INTERN(s_sync_to_async, "sync_to_async");
    INTERN(s_async_to_sync, "async_to_sync");
    INTERN(s_threads, "threads");
    INTERN(s_new_loops, "new_loops");
    INTERN(s_max_depth, "max_depth");
    INTERN(s_status, "status");
    INTERN(s_interface, "interface");
    INTERN(s_pinned_by, "pinned_by");
    INTERN(s_pinned_ms, "pinned_ms");
    INTERN(s_request_id, "request_id");
    INTERN(s_timestamp, "timestamp");
    INTERN(s_hop_tax_us, "hop_tax_us");
    INTERN(s_db_connections, "db_connections");
    INTERN(s_max_in_flight, "max_in_flight");
    INTERN(s_concurrent_ms, "concurrent_ms");
    INTERN(s_sites, "sites");
    INTERN(s_site, "site");
    INTERN(s_kind, "kind");
    INTERN(s_direction, "direction");
    INTERN(s_call_site, "call_site");
    INTERN(s_count, "count");
    INTERN(s_ms, "ms");
    if ((one = PyLong_FromLong(1)) == NULL || (one_float = PyFloat_FromDouble(1.0)) == NULL ||
        (zero = PyLong_FromLong(0)) == NULL || (zero_float = PyFloat_FromDouble(0.0)) == NULL)
        return NULL;
    PyObject *records[F_COUNT] = {
        s_hop_ms, s_duration_ms, s_wait_ms, s_hops, s_overhead_ms, s_work_ms,
        s_sync_to_async, s_async_to_sync, s_threads, s_new_loops, s_max_depth, s_status,
        s_interface, s_pinned_by, s_pinned_ms, s_hop_tax_us, s_db_connections,
        s_max_in_flight, s_concurrent_ms, s_sites};
    PyObject *stats[S_COUNT] = {s_acc, s_sketch, s_overhead_sketch, s_counters,
                                s_raw_status, s_pinned, s_sites, s_concurrency};
    PyObject *sites[7] = {s_site, s_kind, s_direction, s_call_site, s_count, s_ms,
                          s_overhead_ms};
    PyObject *sketches[3] = {s_bins, s_max, s_zeros};
    memcpy(record_names, records, sizeof(records));
    memcpy(stats_names, stats, sizeof(stats));
    memcpy(site_names, sites, sizeof(sites));
    memcpy(sketch_names, sketches, sizeof(sketches));
    INTERN(s_tzinfo, "tzinfo");
    INTERN(s_add_record, "add_record");
    INTERN(s_sites_dropped, "sites_dropped");
    INTERN(s_sample_rate, "sample_rate");
    INTERN(s_hopwatch_errors, "hopwatch_errors");
    INTERN(s_profile, "profile");
    INTERN(s_method, "method");
    INTERN(s_route, "route");
    INTERN(s_view, "view");
    PyObject *line_fields[R_COUNT] = {s_timestamp, s_sites_dropped, s_sample_rate,
                                      s_hopwatch_errors, s_profile, s_method, s_route,
                                      s_view, s_hops, s_sites};
    memcpy(line_names, line_fields, sizeof(line_fields));
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObject(module, "MARKER", PyBytes_FromString(MARKER)) < 0 ||
        PyModule_AddObject(module, "PROCESS_MARKER", PyBytes_FromString(PROCESS_MARKER)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
