/* hopwatch report's accumulation in C: the accelerator for hopwatch.report.scan.
 *
 * add(stats, record): what the scanner's hot loop does with a plain record (no
 * optional values, timestamp in UTC) once msgspec has decoded it: its numbers
 * into the endpoint's accumulators, its hop time and overhead into the two
 * sketches, its (status, interface, pinned_by) into raw_status, each sites
 * entry's ms and overhead_ms into the endpoint's causes. The reference is the
 * pure-Python block in Scanner.feed (scan.py), statement for statement: the same
 * Python objects are updated with the same operations in the same order
 * (PyNumber_Add on the same values, libm's log for the sketch bucket, as
 * math.log), so both give the same partials, which tests check. Rare branches (a
 * line without overhead_ms, a new slowest request, hop_tax_us, causes left out:
 * sites_dropped) call the same EndpointStats methods the Python path calls.
 *
 * scan(...): Scanner.feed's loop over a buffer for the usual case. It reads the
 * usual request line with a JSON parser of its own (parse_line, below: no Record,
 * no Site objects, numbers straight into the accumulators through add_parsed,
 * add's twin for C values) and hands every line it is not sure of to msgspec and
 * add, or back to the Python loop, as before.
 *
 * Measured (docs/performance.md, Report): on a realistic captured log the Python
 * block cost about 5 us per line, add about 1; with the parser the whole report
 * costs about 3 us of CPU per line, where msgspec's decode alone took 3.
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
static Py_ssize_t A_OVERHEAD, A_WORK, A_SLOWEST_FLOOR_AT;
static Py_ssize_t C_SYNC_TO_ASYNC, C_ASYNC_TO_SYNC, C_THREADS, C_THREADS_MAX;
static Py_ssize_t C_NEW_LOOPS, C_NEW_LOOP_RECORDS, C_DEPTH_MAX;
/* aggregate.S_*: the fields of a cause's entry, and of stats.unattributed */
static Py_ssize_t U_REQUESTS, U_COUNT, U_MS, U_OVERHEAD, U_OVH_REQUESTS;
static double MIN_VALUE, INV_LN_GAMMA, SHIFT;
static int no_later_than_floor(PyObject *acc, PyObject *moment);
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
static PyObject *s_unattributed, *s_add_left_out;

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

/* One more value v (>= MIN_VALUE) in the sketch's bucket for it. 0 ok, -1 error. */
static int
sketch_bump(PyObject *sketch, double v)
{
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
    return 0;
}

/* Sketch.add(value), for a float value. 0 ok, -1 error. */
static int
sketch_add(PyObject *sketch, PyObject *value)
{
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    if (v >= MIN_VALUE) {
        if (sketch_bump(sketch, v) < 0)
            return -1;
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
    if (!PyList_Check(acc) || A_SLOWEST_FLOOR >= PyList_GET_SIZE(acc) ||
        A_SLOWEST_FLOOR_AT >= PyList_GET_SIZE(acc)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: an accumulator is not the expected list");
        goto done;
    }
    PyObject *floor = PyList_GET_ITEM(acc, A_SLOWEST_FLOOR);
    int slow = PyObject_RichCompareBool(f[F_HOP_MS], floor, Py_GT);
    if (slow == 0) { /* as slow as the floor: no later enters too (joins_slowest) */
        slow = PyObject_RichCompareBool(f[F_HOP_MS], floor, Py_EQ);
        if (slow > 0) {
            PyObject *moment = PyObject_GetAttr(record, s_timestamp);
            slow = moment == NULL ? -1 : no_later_than_floor(acc, moment);
            Py_XDECREF(moment);
        }
    }
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
     * summed in another order, so their last bits may differ. The dict is read again for
     * each entry: _add_site replaces it when it trims the causes. */
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
        if (!failed) {
            PyObject *causes = field(&stats_layout, stats, S_SITES);
            failed = causes == NULL || add_site(stats, causes, part) < 0;
            Py_XDECREF(causes);
        }
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
    (void)module;
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

/* stats.sites_dropped += value (a Python int, or a C one when value is NULL). 0 ok, -1
 * error. */
static int
add_sites_dropped(PyObject *stats, PyObject *value, long long number)
{
    PyObject *boxed = value != NULL ? Py_NewRef(value) : PyLong_FromLongLong(number);
    if (boxed == NULL)
        return -1;
    PyObject *before = PyObject_GetAttr(stats, s_sites_dropped);
    PyObject *after = before == NULL ? NULL : PyNumber_Add(before, boxed);
    int status = after == NULL ? -1 : PyObject_SetAttr(stats, s_sites_dropped, after);
    Py_DECREF(boxed);
    Py_XDECREF(before);
    Py_XDECREF(after);
    return status;
}

/* A plain record that left causes out (sites_dropped, SITES_LIMIT), as Scanner.feed's
 * Python loop handles it: stats.sites_dropped += it and, when its sites count fewer
 * crossings than its hops, EndpointStats.add_left_out(record, counted, 1.0). 0 ok, -1
 * error. */
static int
left_out_record(PyObject *stats, PyObject *record, PyObject *dropped, PyObject *hops,
                PyObject *sites)
{
    int any = PyObject_IsTrue(dropped);
    if (any <= 0)
        return any;
    if (add_sites_dropped(stats, dropped, 0) < 0)
        return -1;
    PyObject *counted = Py_NewRef(zero);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sites); i++) {
        PyObject *count = PyObject_GetAttr(PyList_GET_ITEM(sites, i), s_count);
        PyObject *sum = count == NULL ? NULL : PyNumber_Add(counted, count);
        Py_XDECREF(count);
        Py_SETREF(counted, sum);
        if (counted == NULL)
            return -1;
    }
    int more = PyObject_RichCompareBool(hops, counted, Py_GT);
    PyObject *done = NULL;
    if (more > 0)
        done = PyObject_CallMethodObjArgs(stats, s_add_left_out, record, counted, one_float,
                                          NULL);
    Py_DECREF(counted);
    if (more < 0 || (more && done == NULL))
        return -1;
    Py_XDECREF(done);
    return 0;
}

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
    /* optional values: (sample_rate, hopwatch_errors, profile) == (1.0, 0, None), as
     * scan._PLAIN (sites_dropped is not one: left_out_record below) */
    int plain = r[R_PROFILE] == Py_None;
    int equal;
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
        /* sampled, profiled, sites lost: the general accumulation */
        if ((tmp = PyObject_CallMethodObjArgs(stats, s_add_record, record, NULL)) == NULL)
            goto done;
    }
    else if (left_out_record(stats, record, r[R_SITES_DROPPED], r[R_HOPS], r[R_SITES]) < 0 ||
             add_plain(stats, record) < 0)
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

/* ======================================================================================
 * The line parser: the usual request line read straight into C values.
 *
 * msgspec's typed decode of a Record and its Site objects costs about 3 us per line of
 * a realistic log (docs/performance.md, Report); add_plain then reads those objects
 * back. parse_line reads the same fields into a PLine (numbers as C numbers, strings as
 * spans of the line), and add_parsed does what add_plain does with them: the same
 * accumulators updated with the same operations in the same order, so that the partial
 * is bit-identical to the msgspec path's (a test checks it on every rendering, hostile
 * strings, every truncation and thousands of mutations of real lines).
 *
 * It takes a line only when it is sure msgspec would decode it to the same values and
 * take_record would hand it to add_plain. Anything else is "not taken" and goes through
 * msgspec exactly as before: invalid JSON; a duplicate field (msgspec keeps the last);
 * a value of another type, out of range, or one that makes the record go through
 * EndpointStats.add_record (sampled, profiled, sites dropped, hopwatch errors, hops
 * without sites); a timestamp that is not RFC 3339 with a zone and at most
 * microseconds, or that leaves datetime's range in UTC; a string whose bytes are not
 * UTF-8; a number it cannot read to the same double (more than 19 digits or an
 * exponent past +-300, read with CPython's correctly rounded strtod when it can);
 * nesting deeper than P_MAX_DEPTH; more than P_MAX_SITES causes.
 *
 * Safety on untrusted bytes: every read is checked against the line's end; recursion
 * (skipped values only) stops at P_MAX_DEPTH; the only buffers are the PLine (fixed
 * arrays, bounds-checked) and heap copies sized from the input for strings with
 * escapes (an escape never decodes to more bytes than it takes).
 * ====================================================================================== */
#include <datetime.h>
#include <stdint.h>

#define P_MAX_SITES 64 /* more causes in one line (SITES_LIMIT is 10 by default): msgspec's */
#define P_MAX_DEPTH 64 /* a skipped value nested deeper: msgspec's */
#define P_MAX_NUMBER 64 /* a longer number (digits, exponent) is not taken */

enum { S_ESCAPED = 1, S_HIGH = 2 }; /* Str.flags: has a backslash; has a byte >= 0x80 */

typedef struct {
    const unsigned char *p; /* the raw bytes between the quotes; NULL: JSON null */
    Py_ssize_t n;
    unsigned flags;
} Str;

typedef struct {
    Str site, kind, direction, call_site;
    long long count;
    double ms, overhead;
    int has_overhead;
} PSite;

typedef struct {
    uint64_t seen; /* the fields read (a bit per K_*) */
    long long micros; /* the timestamp in UTC: microseconds since 1970 */
    Str request_id, method, route, view, interface, pinned_by;
    long long status; /* -1: null */
    double duration, hop_ms, wait, overhead, work, pinned, tax, concurrent;
    long long hops, s2a, a2s, threads, loops, depth, db, in_flight, sites_dropped;
    int has_overhead, has_work, has_pinned, has_tax, has_concurrent, has_db, has_in_flight;
    int nsites;
    PSite sites[P_MAX_SITES];
} PLine;

/* parse.Record's fields; a test checks they are msgspec.structs.fields(Record). The
 * required ones come first (through K_SITES). */
enum {
    K_EVENT, K_SCHEMA, K_TIMESTAMP, K_REQUEST_ID, K_METHOD, K_ROUTE, K_VIEW, K_STATUS,
    K_INTERFACE, K_DURATION, K_HOPS, K_HOP_MS, K_WAIT, K_S2A, K_A2S, K_THREADS, K_NEW_LOOPS,
    K_MAX_DEPTH, K_SITES, K_PINNED_MS, K_PINNED_BY, K_SITES_DROPPED, K_SAMPLE_RATE,
    K_ERRORS, K_PROFILE, K_HOP_TAX, K_IN_FLIGHT, K_CONCURRENT, K_DB, K_OVERHEAD, K_WORK,
    K_COUNT
};
static const char *const record_keys[K_COUNT] = {
    "event", "schema", "timestamp", "request_id", "method", "route", "view", "status",
    "interface", "duration_ms", "hops", "hop_ms", "wait_ms", "sync_to_async",
    "async_to_sync", "threads", "new_loops", "max_depth", "sites", "pinned_ms", "pinned_by",
    "sites_dropped", "sample_rate", "hopwatch_errors", "profile", "hop_tax_us",
    "max_in_flight", "concurrent_ms", "db_connections", "overhead_ms", "work_ms",
};
#define K_REQUIRED ((1ull << (K_SITES + 1)) - 1)
/* parse.Site's fields (the same test); the first five are required. */
enum { SK_SITE, SK_KIND, SK_DIRECTION, SK_COUNT, SK_MS, SK_CALL_SITE, SK_OVERHEAD, SK_ALL };
static const char *const site_keys[SK_ALL] = {
    "site", "kind", "direction", "count", "ms", "call_site", "overhead_ms",
};
#define SK_REQUIRED ((1u << (SK_MS + 1)) - 1)
/* Their lengths (set by the module's init). */
static Py_ssize_t record_key_lengths[K_COUNT], site_key_lengths[SK_ALL];
#define MAX_KEY_NAME 15 /* the longest name above: "hopwatch_errors" */

/* parse.MAX_VALUE and parse.Count's bound: numbers at or above it are invalid. */
#define P_LIMIT 1e9
#define P_COUNT_LIMIT 1000000000LL

/* Whether a[0:n] == b[0:n], for the short strings compared here (a libc call costs more
 * than the comparison). */
static inline int
same_bytes(const unsigned char *a, const unsigned char *b, Py_ssize_t n)
{
    uint64_t x, y;
    if (n >= 8) {
        while (n > 8) {
            memcpy(&x, a, 8);
            memcpy(&y, b, 8);
            if (x != y)
                return 0;
            a += 8;
            b += 8;
            n -= 8;
        }
        memcpy(&x, a + n - 8, 8); /* the last 8 (the first of them may be compared twice) */
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        uint32_t u, v, s, t;
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        memcpy(&s, a + n - 4, 4);
        memcpy(&t, b + n - 4, 4);
        return u == v && s == t;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline const unsigned char *
skip_ws(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p > ' ') /* the usual case: no space at all */
        return p;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Among the 8 bytes at p, the offset of the first that is '"', '\\', a control character
 * or >= 0x80; 8 when there is none. (Each test sets a byte's high bit exactly for the
 * first such byte; bytes after it may be marked wrongly, which does not matter.) */
static inline int
first_special(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t quote = x ^ (ones * '"'), slash = x ^ (ones * '\\');
    uint64_t special = (((quote - ones) & ~quote) | ((slash - ones) & ~slash) |
                        ((x - ones * 0x20) & ~x) | x) &
                       highs;
    if (special == 0)
        return 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_ctzll(special) >> 3;
#else
    for (int i = 0; i < 8; i++) { /* another byte order: the first byte the slow way */
        unsigned char c = p[i];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
            return i;
    }
    return 8;
#endif
}

static inline int
hex4(const unsigned char *p, unsigned *out)
{
    unsigned value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        unsigned digit;
        if (c >= '0' && c <= '9')
            digit = c - '0';
        else if (c >= 'a' && c <= 'f')
            digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            digit = c - 'A' + 10;
        else
            return 0;
        value = (value << 4) | digit;
    }
    *out = value;
    return 1;
}

/* A \u escape at p (p[0] == '\\', p[1] == 'u'), with its low surrogate if it is a high
 * one, as msgspec reads it (a lone surrogate is invalid): the code point, and p past
 * it; NULL when invalid or cut short. */
static const unsigned char *
read_unicode_escape(const unsigned char *p, const unsigned char *end, unsigned *code)
{
    unsigned cp, low;
    if (end - p < 6 || !hex4(p + 2, &cp))
        return NULL;
    p += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return NULL;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &low))
            return NULL;
        if (low < 0xDC00 || low > 0xDFFF)
            return NULL;
        p += 6;
        cp = 0x10000 + (((cp - 0xD800) << 10) | (low - 0xDC00));
    }
    *code = cp;
    return p;
}

/* The string whose opening quote is at p: its raw bytes into *s, and p past its closing
 * quote; NULL when it is not a valid JSON string (a raw control character, an unknown
 * escape, a lone surrogate) or is cut short. Its bytes are not checked as UTF-8 here. */
static const unsigned char *
read_string(const unsigned char *p, const unsigned char *end, Str *s)
{
    unsigned flags = 0;
    p++;
    const unsigned char *start = p;
    for (;;) {
        while (end - p >= 8) {
            int offset = first_special(p);
            p += offset;
            if (offset < 8)
                break;
        }
        if (p >= end)
            return NULL;
        unsigned char c = *p;
        if (c == '"') {
            s->p = start;
            s->n = p - start;
            s->flags = flags;
            return p + 1;
        }
        if (c == '\\') {
            flags |= S_ESCAPED;
            if (end - p < 2)
                return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u': {
                unsigned code;
                if ((p = read_unicode_escape(p, end, &code)) == NULL)
                    return NULL;
                break;
            }
            default:
                return NULL;
            }
            continue;
        }
        if (c < 0x20)
            return NULL;
        if (c >= 0x80)
            flags |= S_HIGH;
        p++;
    }
}

/* The escape at p (p[0] == '\\') decoded into *out, moved past what it wrote: p past the
 * escape, or NULL when it is invalid or cut short. */
static inline const unsigned char *
decode_escape(const unsigned char *p, const unsigned char *end, unsigned char **out)
{
    unsigned char *o = *out;
    if (end - p < 2)
        return NULL;
    unsigned char c = p[1];
    if (c == 'u') {
        unsigned cp;
        if ((p = read_unicode_escape(p, end, &cp)) == NULL)
            return NULL;
        if (cp < 0x80)
            *o++ = (unsigned char)cp;
        else if (cp < 0x800) {
            *o++ = (unsigned char)(0xC0 | (cp >> 6));
            *o++ = (unsigned char)(0x80 | (cp & 0x3F));
        }
        else if (cp < 0x10000) {
            *o++ = (unsigned char)(0xE0 | (cp >> 12));
            *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            *o++ = (unsigned char)(0x80 | (cp & 0x3F));
        }
        else {
            *o++ = (unsigned char)(0xF0 | (cp >> 18));
            *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            *o++ = (unsigned char)(0x80 | (cp & 0x3F));
        }
        *out = o;
        return p;
    }
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    default: return NULL;
    }
    *out = o;
    return p + 2;
}

/* The bytes a valid string's raw bytes stand for, into out (room for n bytes: no escape
 * decodes to more bytes than it takes); their number, or -1. */
static Py_ssize_t
unescape(const unsigned char *p, Py_ssize_t n, unsigned char *out)
{
    const unsigned char *end = p + n;
    unsigned char *o = out;
    while (p < end) {
        if (*p != '\\')
            *o++ = *p++;
        else if ((p = decode_escape(p, end, &o)) == NULL)
            return -1;
    }
    return o - out;
}

/* Whether p[0:n] is UTF-8 as Python's strict decoder reads it (no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
static int
valid_utf8(const unsigned char *p, Py_ssize_t n)
{
    const unsigned char *end = p + n;
    while (p < end) {
        unsigned char c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        Py_ssize_t size;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            size = 2;
            cp = c & 0x1F;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            size = 3;
            cp = c & 0x0F;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            size = 4;
            cp = c & 0x07;
        }
        else
            return 0;
        if (end - p < size)
            return 0;
        for (Py_ssize_t i = 1; i < size; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((size == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (size == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        p += size;
    }
    return 1;
}

/* A JSON number at p: its syntax checked (JSON's grammar, as msgspec's), its digits
 * read. */
typedef struct {
    const unsigned char *start, *end;
    int is_float;      /* has a fraction or an exponent */
    int negative;
    int exact;         /* mantissa holds every digit (at most 19) */
    int nonzero;       /* a digit other than 0 */
    int int_digits;    /* digits before the point */
    uint64_t mantissa; /* the digits, point left out */
    long exponent;     /* the value is mantissa * 10**exponent (when exact) */
    long exp_part;     /* the written exponent, capped at +-100000 */
} Num;

static const unsigned char *
read_number(const unsigned char *p, const unsigned char *end, Num *num)
{
    int digits = 0, fraction = 0;
    num->start = p;
    num->is_float = num->negative = num->nonzero = 0;
    num->mantissa = 0;
    num->exp_part = 0;
    if (p < end && *p == '-') {
        num->negative = 1;
        p++;
    }
    if (p >= end || !is_digit(*p))
        return NULL;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return NULL; /* a leading zero */
        digits = 1;
    }
    else {
        while (p < end && is_digit(*p)) {
            if (digits < 19)
                num->mantissa = num->mantissa * 10 + (uint64_t)(*p - '0');
            digits++;
            p++;
        }
        num->nonzero = 1;
    }
    num->int_digits = digits;
    if (p < end && *p == '.') {
        num->is_float = 1;
        p++;
        const unsigned char *first = p;
        while (p < end && is_digit(*p)) {
            if (digits < 19)
                num->mantissa = num->mantissa * 10 + (uint64_t)(*p - '0');
            if (*p != '0')
                num->nonzero = 1;
            digits++;
            fraction++;
            p++;
        }
        if (p == first)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        num->is_float = 1;
        p++;
        int sign = 1;
        if (p < end && (*p == '+' || *p == '-')) {
            sign = *p == '-' ? -1 : 1;
            p++;
        }
        const unsigned char *first = p;
        while (p < end && is_digit(*p)) {
            if (num->exp_part < 100000)
                num->exp_part = num->exp_part * 10 + (*p - '0');
            p++;
        }
        if (p == first)
            return NULL;
        num->exp_part *= sign;
    }
    num->exact = digits <= 19;
    num->exponent = num->exp_part - fraction;
    num->end = p;
    return p;
}

/* A count (parse.Count and friends): an integer in [low, high). 0 ok, -1 not taken. */
static int
number_count(const Num *num, long long low, long long high, long long *out)
{
    if (num->is_float || num->int_digits > 18)
        return -1; /* msgspec refuses a float for an int field */
    long long value = (long long)num->mantissa;
    if (num->negative)
        value = -value; /* "-0" is 0, for msgspec too */
    if (value < low || value >= high)
        return -1;
    *out = value;
    return 0;
}

static const double powers_of_10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* The double msgspec makes of the number for a float field (correctly rounded both
 * ways: an integer converted, the exact fast path msgspec takes first, else CPython's
 * strtod). 0 ok, -1 not taken. */
static int
number_double(const Num *num, double *out)
{
    if (!num->is_float) { /* an integer: "-0" is 0 then 0.0, as in msgspec */
        if (num->int_digits > 18)
            return -1;
        long long value = (long long)num->mantissa;
        *out = (double)(num->negative ? -value : value);
        return 0;
    }
    if (num->exact && num->exponent >= -22 && num->exponent <= 22 &&
        (num->mantissa >> 53) == 0) {
        double value = (double)num->mantissa;
        if (num->exponent >= 0)
            value *= powers_of_10[num->exponent];
        else
            value /= powers_of_10[-num->exponent];
        *out = num->negative ? -value : value;
        return 0;
    }
    Py_ssize_t size = num->end - num->start;
    if (size >= P_MAX_NUMBER || num->exp_part > 300 || num->exp_part < -300)
        return -1;
    char text[P_MAX_NUMBER];
    memcpy(text, num->start, (size_t)size);
    text[size] = '\0';
    char *stop = NULL;
    double value = PyOS_string_to_double(text, &stop, NULL);
    if (value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (stop != text + size || !isfinite(value))
        return -1;
    if (num->nonzero && fabs(value) < 1e-300)
        return -1; /* underflow: left to msgspec */
    *out = value;
    return 0;
}

/* A number at p that must be a count in [low, high); p past it, or NULL. */
static const unsigned char *
read_count(const unsigned char *p, const unsigned char *end, long long low, long long high,
           long long *out)
{
    Num num;
    if ((p = read_number(p, end, &num)) == NULL || number_count(&num, low, high, out) < 0)
        return NULL;
    return p;
}

/* parse.Millis: a number in [0, 1e9). */
static const unsigned char *
read_millis(const unsigned char *p, const unsigned char *end, double *out)
{
    Num num;
    if ((p = read_number(p, end, &num)) == NULL || number_double(&num, out) < 0)
        return NULL;
    if (!(*out >= 0.0 && *out < P_LIMIT))
        return NULL;
    return p;
}

static inline int
is_null(const unsigned char *p, const unsigned char *end)
{
    return end - p >= 4 && memcmp(p, "null", 4) == 0;
}

/* A value that may be null: 1 null (p moved past it), 0 not null. */
static inline int
read_null(const unsigned char **p, const unsigned char *end)
{
    if (**p == 'n') {
        if (!is_null(*p, end))
            return -1;
        *p += 4;
        return 1;
    }
    return 0;
}

/* Skip the value at p (an unknown field's), checking its syntax as msgspec does; p past
 * it, or NULL. Its strings must be UTF-8 (msgspec does not check them; this does, so
 * that such a line is msgspec's). */
static const unsigned char *
skip_value(const unsigned char *p, const unsigned char *end, int depth)
{
    if (p >= end || depth > P_MAX_DEPTH)
        return NULL;
    switch (*p) {
    case '"': {
        Str s;
        if ((p = read_string(p, end, &s)) == NULL)
            return NULL;
        if ((s.flags & S_HIGH) && !valid_utf8(s.p, s.n))
            return NULL;
        return p;
    }
    case '{':
    case '[': {
        unsigned char close = *p == '{' ? '}' : ']';
        int object = *p == '{';
        p = skip_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (object) {
                Str key;
                if (p >= end || *p != '"' || (p = read_string(p, end, &key)) == NULL)
                    return NULL;
                if ((key.flags & S_HIGH) && !valid_utf8(key.p, key.n))
                    return NULL;
                p = skip_ws(p, end);
                if (p >= end || *p != ':')
                    return NULL;
                p = skip_ws(p + 1, end);
            }
            if ((p = skip_value(p, end, depth + 1)) == NULL)
                return NULL;
            p = skip_ws(p, end);
            if (p >= end)
                return NULL;
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p = skip_ws(p + 1, end);
        }
    }
    case 't':
        return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        return is_null(p, end) ? p + 4 : NULL;
    default: {
        Num num;
        return read_number(p, end, &num);
    }
    }
}

/* Which of names[0:count] a key is (its escapes decoded), or -1. *hint: the one found at
 * this place in the line before (lines repeat their key order), tried first. */
static int
key_index(const Str *key, const char *const *names, const Py_ssize_t *lengths, int count,
          signed char *hint)
{
    const unsigned char *text = key->p;
    Py_ssize_t n = key->n;
    unsigned char decoded[6 * MAX_KEY_NAME];
    if (key->flags & S_ESCAPED) {
        /* every character of a name is ASCII: at most 6 bytes escaped */
        if (n > (Py_ssize_t)sizeof(decoded))
            return -1;
        if ((n = unescape(key->p, key->n, decoded)) < 0)
            return -1;
        text = decoded;
    }
    if (n == 0 || n > MAX_KEY_NAME)
        return -1;
    int guess = *hint;
    if (guess >= 0 && guess < count && lengths[guess] == n &&
        same_bytes((const unsigned char *)names[guess], text, n))
        return guess;
    for (int i = 0; i < count; i++) {
        const char *name = names[i];
        if (lengths[i] == n && (unsigned char)name[0] == text[0] &&
            same_bytes((const unsigned char *)name, text, n)) {
            *hint = (signed char)i;
            return i;
        }
    }
    return -1;
}

/* A string value at p into *s (allow_null: null gives s->p == NULL). */
static const unsigned char *
read_text(const unsigned char *p, const unsigned char *end, Str *s, int allow_null)
{
    if (p >= end)
        return NULL;
    if (allow_null && *p == 'n') {
        s->p = NULL;
        s->n = 0;
        s->flags = 0;
        return is_null(p, end) ? p + 4 : NULL;
    }
    if (*p != '"')
        return NULL;
    return read_string(p, end, s);
}

/* A date's days since 1970-01-01 (proleptic Gregorian; H. Hinnant's days_from_civil). */
static long long
days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static void
civil_from_days(long long z, int *year, int *month, int *day)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long y = (long long)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(y + (*month <= 2));
}

static const long long MICROS_PER_DAY = 86400000000LL;
/* datetime's range: 0001-01-01T00:00:00 to 9999-12-31T23:59:59.999999, in micros. */
#define FIRST_DAY (-719162LL)
#define LAST_DAY 2932896LL

static int
fixed_digits(const unsigned char *p, int count)
{
    int value = 0;
    for (int i = 0; i < count; i++) {
        if (!is_digit(p[i]))
            return -1;
        value = value * 10 + (p[i] - '0');
    }
    return value;
}

/* A timestamp as msgspec reads it for parse.Timestamp (RFC 3339 with a zone), limited to
 * the forms it reads to whole microseconds: its instant in UTC, in micros since 1970.
 * 0 ok, -1 not taken (another form, out of range once in UTC, or invalid). */
static int
read_timestamp(const Str *s, long long *out)
{
    if (s->flags) /* escaped or not ASCII: msgspec's */
        return -1;
    const unsigned char *p = s->p, *end = s->p + s->n;
    if (s->n < 20) /* the date, the time and at least "Z" */
        return -1;
    int year = fixed_digits(p, 4), month = fixed_digits(p + 5, 2), day = fixed_digits(p + 8, 2);
    int hour = fixed_digits(p + 11, 2), minute = fixed_digits(p + 14, 2);
    int second = fixed_digits(p + 17, 2);
    if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0)
        return -1;
    if (p[4] != '-' || p[7] != '-' || !(p[10] == 'T' || p[10] == 't' || p[10] == ' ') ||
        p[13] != ':' || p[16] != ':')
        return -1;
    p += 19;
    int micros = 0;
    if (p < end && *p == '.') {
        int digits = 0;
        p++;
        while (p < end && is_digit(*p)) {
            if (++digits > 6)
                return -1; /* msgspec rounds to microseconds: its */
            micros = micros * 10 + (*p - '0');
            p++;
        }
        if (digits == 0)
            return -1;
        for (int i = digits; i < 6; i++)
            micros *= 10;
    }
    if (p >= end)
        return -1; /* no zone: not a Timestamp */
    int offset = 0; /* minutes east of UTC */
    if (*p == 'Z' || *p == 'z') {
        if (p + 1 != end)
            return -1;
    }
    else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        if (end - p < 4)
            return -1;
        int oh = fixed_digits(p, 2);
        p += 2;
        if (*p == ':')
            p++;
        if (end - p != 2)
            return -1;
        int om = fixed_digits(p, 2);
        if (oh < 0 || om < 0 || oh > 23 || om > 59)
            return -1;
        offset = sign * (oh * 60 + om);
    }
    else
        return -1;
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year == 0 || month == 0 || month > 12 || day == 0 || hour > 23 || minute > 59 ||
        second > 59)
        return -1;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > month_days[month - 1] + (month == 2 && leap))
        return -1;
    long long days = days_from_civil(year, (unsigned)month, (unsigned)day);
    long long value = days * MICROS_PER_DAY +
                      ((long long)hour * 3600 + minute * 60 + second) * 1000000LL + micros -
                      (long long)offset * 60000000LL;
    if (value < FIRST_DAY * MICROS_PER_DAY || value >= (LAST_DAY + 1) * MICROS_PER_DAY)
        return -1; /* to_utc gives None: the Python loop skips it */
    *out = value;
    return 0;
}

/* The field found at each place of a line and of a sites entry (key_index's hints). */
#define HINTS 64
static signed char record_hints[HINTS], site_hints[HINTS];

/* The key at p (which must be a string) into *key, and which of names it is into *id (-1:
 * none); p past its closing quote, or NULL. The name found at this place in the line
 * before is compared first, straight from the bytes: written plainly (no escape can be
 * in it then), it needs no other reading. */
static const unsigned char *
read_key(const unsigned char *p, const unsigned char *end, Str *key, int *id,
         const char *const *names, const Py_ssize_t *lengths, int count, signed char *hint)
{
    if (p >= end || *p != '"')
        return NULL;
    int guess = *hint;
    if (guess >= 0 && guess < count) {
        Py_ssize_t n = lengths[guess];
        if (end - p > n + 1 && p[n + 1] == '"' &&
            same_bytes(p + 1, (const unsigned char *)names[guess], n)) {
            key->p = p + 1;
            key->n = n;
            key->flags = 0;
            *id = guess;
            return p + n + 2;
        }
    }
    if ((p = read_string(p, end, key)) == NULL)
        return NULL;
    *id = key_index(key, names, lengths, count, hint);
    return p;
}

/* One sites entry at p (an object) into *site; p past it, or NULL. */
static const unsigned char *
read_site(const unsigned char *p, const unsigned char *end, PSite *site)
{
    unsigned seen = 0;
    int place = 0;
    site->call_site.p = NULL;
    site->has_overhead = 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return NULL; /* required fields missing */
    for (;;) {
        Str key;
        int id;
        p = read_key(p, end, &key, &id, site_keys, site_key_lengths, SK_ALL,
                     &site_hints[place < HINTS ? place : HINTS - 1]);
        place++;
        if (p == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return NULL;
        p = skip_ws(p + 1, end);
        if (p >= end)
            return NULL;
        if (id < 0) {
            if ((key.flags & S_HIGH) && !valid_utf8(key.p, key.n))
                return NULL;
            p = skip_value(p, end, 1);
        }
        else {
            if (seen & (1u << id))
                return NULL; /* a duplicate: msgspec keeps the last one, leave it to it */
            seen |= 1u << id;
            switch (id) {
            case SK_SITE: p = read_text(p, end, &site->site, 0); break;
            case SK_KIND: p = read_text(p, end, &site->kind, 0); break;
            case SK_DIRECTION: p = read_text(p, end, &site->direction, 0); break;
            case SK_CALL_SITE: p = read_text(p, end, &site->call_site, 1); break;
            case SK_COUNT: p = read_count(p, end, 0, P_COUNT_LIMIT, &site->count); break;
            case SK_MS: p = read_millis(p, end, &site->ms); break;
            case SK_OVERHEAD: {
                int null = read_null(&p, end);
                if (null < 0)
                    return NULL;
                if (!null) {
                    p = read_millis(p, end, &site->overhead);
                    site->has_overhead = 1;
                }
                break;
            }
            }
        }
        if (p == NULL)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end)
            return NULL;
        if (*p == '}')
            break;
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
    if ((seen & SK_REQUIRED) != SK_REQUIRED)
        return NULL;
    return p + 1;
}

/* An optional Millis (null or absent: *has stays 0). */
static const unsigned char *
read_optional_millis(const unsigned char *p, const unsigned char *end, double *out, int *has)
{
    int null = read_null(&p, end);
    if (null < 0)
        return NULL;
    if (null)
        return p;
    *has = 1;
    return read_millis(p, end, out);
}

static const unsigned char *
read_optional_count(const unsigned char *p, const unsigned char *end, long long *out,
                    int *has)
{
    int null = read_null(&p, end);
    if (null < 0)
        return NULL;
    if (null)
        return p;
    *has = 1;
    return read_count(p, end, 0, P_COUNT_LIMIT, out);
}

static const char EVENT[] = "hopwatch.request";

/* One field's value at p (never at the end). */
static const unsigned char *
read_field(int id, const unsigned char *p, const unsigned char *end, PLine *line)
{
    long long ignored;
    switch (id) {
    case K_EVENT: {
        Str s;
        if (*p != '"' || (p = read_string(p, end, &s)) == NULL)
            return NULL;
        if (s.flags & S_ESCAPED) { /* compare what it stands for */
            unsigned char decoded[6 * sizeof(EVENT)];
            Py_ssize_t n;
            if (s.n > (Py_ssize_t)sizeof(decoded) || (n = unescape(s.p, s.n, decoded)) < 0)
                return NULL;
            return n == sizeof(EVENT) - 1 && memcmp(decoded, EVENT, (size_t)n) == 0 ? p : NULL;
        }
        return s.n == sizeof(EVENT) - 1 && memcmp(s.p, EVENT, (size_t)s.n) == 0 ? p : NULL;
    }
    case K_SCHEMA:
        return read_count(p, end, 1, P_COUNT_LIMIT, &ignored);
    case K_TIMESTAMP: {
        Str s;
        if (*p != '"' || (p = read_string(p, end, &s)) == NULL)
            return NULL;
        return read_timestamp(&s, &line->micros) < 0 ? NULL : p;
    }
    case K_REQUEST_ID: return read_text(p, end, &line->request_id, 0);
    case K_METHOD: return read_text(p, end, &line->method, 0);
    case K_ROUTE: return read_text(p, end, &line->route, 0);
    case K_VIEW: return read_text(p, end, &line->view, 1);
    case K_INTERFACE: return read_text(p, end, &line->interface, 0);
    case K_PINNED_BY: return read_text(p, end, &line->pinned_by, 1);
    case K_STATUS: {
        int null = read_null(&p, end);
        if (null < 0)
            return NULL;
        line->status = -1;
        return null ? p : read_count(p, end, 100, 1000, &line->status);
    }
    case K_DURATION: return read_millis(p, end, &line->duration);
    case K_HOP_MS: return read_millis(p, end, &line->hop_ms);
    case K_WAIT: return read_millis(p, end, &line->wait);
    case K_HOPS: return read_count(p, end, 0, P_COUNT_LIMIT, &line->hops);
    case K_S2A: return read_count(p, end, 0, P_COUNT_LIMIT, &line->s2a);
    case K_A2S: return read_count(p, end, 0, P_COUNT_LIMIT, &line->a2s);
    case K_THREADS: return read_count(p, end, 0, P_COUNT_LIMIT, &line->threads);
    case K_NEW_LOOPS: return read_count(p, end, 0, P_COUNT_LIMIT, &line->loops);
    case K_MAX_DEPTH: return read_count(p, end, 0, P_COUNT_LIMIT, &line->depth);
    case K_SITES_DROPPED: return read_count(p, end, 0, P_COUNT_LIMIT, &line->sites_dropped);
    case K_ERRORS: /* not 0: EndpointStats.add_record's */
        return read_count(p, end, 0, 1, &ignored);
    case K_SAMPLE_RATE: { /* not 1.0: add_record's (or invalid) */
        double rate;
        Num num;
        if ((p = read_number(p, end, &num)) == NULL || number_double(&num, &rate) < 0)
            return NULL;
        return rate == 1.0 ? p : NULL;
    }
    case K_PROFILE: /* a profile: add_record's */
        return is_null(p, end) ? p + 4 : NULL;
    case K_PINNED_MS: return read_optional_millis(p, end, &line->pinned, &line->has_pinned);
    case K_HOP_TAX: return read_optional_millis(p, end, &line->tax, &line->has_tax);
    case K_CONCURRENT:
        return read_optional_millis(p, end, &line->concurrent, &line->has_concurrent);
    case K_OVERHEAD: return read_optional_millis(p, end, &line->overhead, &line->has_overhead);
    case K_WORK: return read_optional_millis(p, end, &line->work, &line->has_work);
    case K_IN_FLIGHT: return read_optional_count(p, end, &line->in_flight, &line->has_in_flight);
    case K_DB: return read_optional_count(p, end, &line->db, &line->has_db);
    case K_SITES: {
        if (*p != '[')
            return NULL;
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']')
            return p + 1;
        for (;;) {
            if (line->nsites >= P_MAX_SITES || p >= end || *p != '{')
                return NULL;
            if ((p = read_site(p, end, &line->sites[line->nsites])) == NULL)
                return NULL;
            line->nsites++;
            p = skip_ws(p, end);
            if (p >= end)
                return NULL;
            if (*p == ']')
                return p + 1;
            if (*p != ',')
                return NULL;
            p = skip_ws(p + 1, end);
        }
    }
    }
    return NULL;
}

/* The JSON object line[0:size] (line[0] == '{') as a record that add_plain would take:
 * 0 into *out, -1 not taken. */
static int
parse_line(const unsigned char *p, Py_ssize_t size, PLine *line)
{
    const unsigned char *end = p + size;
    line->seen = 0;
    line->nsites = 0;
    line->sites_dropped = 0;
    line->has_overhead = line->has_work = line->has_pinned = line->has_tax = 0;
    line->has_concurrent = line->has_db = line->has_in_flight = 0;
    line->pinned_by.p = NULL;
    int place = 0;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return -1;
    for (;;) {
        Str key;
        int id;
        p = read_key(p, end, &key, &id, record_keys, record_key_lengths, K_COUNT,
                     &record_hints[place < HINTS ? place : HINTS - 1]);
        place++;
        if (p == NULL)
            return -1;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return -1;
        p = skip_ws(p + 1, end);
        if (p >= end)
            return -1;
        if (id < 0) {
            if ((key.flags & S_HIGH) && !valid_utf8(key.p, key.n))
                return -1;
            p = skip_value(p, end, 1);
        }
        else {
            if (line->seen & (1ull << id))
                return -1; /* a duplicate: msgspec keeps the last one, leave it to it */
            line->seen |= 1ull << id;
            p = read_field(id, p, end, line);
        }
        if (p == NULL)
            return -1;
        p = skip_ws(p, end);
        if (p >= end)
            return -1;
        if (*p == '}')
            break;
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, end);
    }
    if (skip_ws(p + 1, end) != end) /* trailing characters */
        return -1;
    if ((line->seen & K_REQUIRED) != K_REQUIRED)
        return -1;
    if (line->hops && line->nsites == 0)
        return -1; /* hops without sites: add_record's */
    return 0;
}

/* --- strings: the line's text as Python str, the repeated ones cached ------------------ */

/* A bounded cache from a string's raw bytes (as the line writes them, escapes and all)
 * to the str they decode to: routes, views and causes repeat from line to line, and a
 * cached str is not made again (nor its hash computed again). It never evicts: when it
 * is full, or for a long value, the str is made each time. */
#define CACHE_SLOTS 2048 /* a power of 2; 64 KB, so that it stays in the CPU's caches */
#define CACHE_FILL (CACHE_SLOTS / 2)
#define CACHE_PROBES 8
#define CACHE_VALUE_BYTES 512
typedef struct {
    uint64_t hash;
    Py_ssize_t n;
    unsigned char *raw;
    PyObject *value;
} CacheSlot;
static CacheSlot *str_cache = NULL;
static Py_ssize_t str_cache_used = 0;

/* p[0:n] as a 64-bit word, for n <= 8 (no byte past p + n is read). */
static inline uint64_t
load_short(const unsigned char *p, Py_ssize_t n)
{
    uint64_t x = 0;
    if (n >= 4) {
        uint32_t head, tail;
        memcpy(&head, p, 4);
        memcpy(&tail, p + n - 4, 4);
        x = ((uint64_t)tail << 32) | head; /* overlapping when n < 8: still a function of p[0:n] */
    }
    else if (n > 0)
        x = (uint64_t)p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16);
    return x;
}

static inline uint64_t
mix(uint64_t h, uint64_t x)
{
    h = (h ^ x) * 0xFF51AFD7ED558CCDULL;
    return h ^ (h >> 32);
}

/* A hash of a string's raw bytes for the cache that reads at most 24 of them whatever the
 * length (the first, middle and last 8): values that share them only probe further. */
static inline uint64_t
cache_hash(const unsigned char *p, Py_ssize_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n, first, middle, last;
    if (n <= 8)
        return mix(h, load_short(p, n));
    memcpy(&first, p, 8);
    memcpy(&last, p + n - 8, 8);
    h = mix(h, first);
    if (n > 16) {
        memcpy(&middle, p + n / 2 - 4, 8);
        h = mix(h, middle);
    }
    return mix(h, last) * 0xC4CEB9FE1A85EC53ULL;
}

/* The str a string's raw bytes stand for, made anew: a new reference; NULL without an
 * exception when they are not UTF-8 (the line is not taken), NULL with one on error. */
static PyObject *
make_str(const Str *s)
{
    PyObject *value;
    if (s->flags & S_ESCAPED) {
        unsigned char *buffer = PyMem_Malloc(s->n > 0 ? (size_t)s->n : 1);
        if (buffer == NULL)
            return PyErr_NoMemory();
        Py_ssize_t n = unescape(s->p, s->n, buffer);
        value = n < 0 ? NULL : PyUnicode_DecodeUTF8((const char *)buffer, n, NULL);
        PyMem_Free(buffer);
        if (n < 0)
            return NULL;
    }
    else
        value = PyUnicode_DecodeUTF8((const char *)s->p, s->n, NULL);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    return value;
}

/* As make_str, through the cache; None for a null string. */
static PyObject *
str_of(const Str *s)
{
    if (s->p == NULL)
        Py_RETURN_NONE;
    if (str_cache == NULL || s->n > CACHE_VALUE_BYTES)
        return make_str(s);
    uint64_t h = cache_hash(s->p, s->n);
    CacheSlot *free_slot = NULL;
    for (int i = 0; i < CACHE_PROBES; i++) {
        CacheSlot *slot = &str_cache[(h + (uint64_t)i) & (CACHE_SLOTS - 1)];
        if (slot->value == NULL) {
            free_slot = slot;
            break;
        }
        if (slot->hash == h && slot->n == s->n && same_bytes(slot->raw, s->p, s->n)) {
            Py_INCREF(slot->value);
            return slot->value;
        }
    }
    PyObject *value = make_str(s);
    if (value == NULL || free_slot == NULL || str_cache_used >= CACHE_FILL)
        return value;
    unsigned char *raw = PyMem_Malloc(s->n > 0 ? (size_t)s->n : 1);
    if (raw == NULL)
        return value; /* not cached, still right */
    memcpy(raw, s->p, (size_t)s->n);
    free_slot->hash = h;
    free_slot->n = s->n;
    free_slot->raw = raw;
    Py_INCREF(value);
    free_slot->value = value;
    str_cache_used++;
    return value;
}

/* --- the accumulation of a parsed line: add_plain with C numbers ---------------------- */

static PyObject *status_codes[1000]; /* 100..999 as int objects, made when first seen */

static PyObject *
status_object(long long status)
{
    if (status < 0)
        Py_RETURN_NONE;
    if (status < 100 || status > 999) {
        PyErr_SetString(PyExc_ValueError, "hopwatch: a status out of range");
        return NULL;
    }
    if (status_codes[status] == NULL && (status_codes[status] = PyLong_FromLongLong(status)) == NULL)
        return NULL;
    Py_INCREF(status_codes[status]);
    return status_codes[status];
}

static int
check_list(PyObject *list, Py_ssize_t i)
{
    if (!PyList_Check(list) || i >= PyList_GET_SIZE(list)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: an accumulator is not the expected list");
        return -1;
    }
    return 0;
}

/* list[i] += value for a float value: add_to with a float, without making it. */
static int
add_double(PyObject *list, Py_ssize_t i, double value)
{
    if (check_list(list, i) < 0)
        return -1;
    PyObject *item = PyList_GET_ITEM(list, i);
    if (PyFloat_CheckExact(item)) {
        double total = PyFloat_AS_DOUBLE(item) + value;
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
    PyObject *boxed = PyFloat_FromDouble(value);
    if (boxed == NULL)
        return -1;
    int status = add_to(list, i, boxed);
    Py_DECREF(boxed);
    return status;
}

/* list[i] += value for an int value (int + int stays an int, float + int a float). */
static int
add_long(PyObject *list, Py_ssize_t i, long long value)
{
    if (check_list(list, i) < 0)
        return -1;
    PyObject *item = PyList_GET_ITEM(list, i);
    if (PyFloat_CheckExact(item))
        return add_double(list, i, (double)value); /* float.__add__ converts the int */
    if (PyLong_CheckExact(item)) {
        int overflow = 0;
        long long current = PyLong_AsLongLongAndOverflow(item, &overflow);
        long long total;
        if (!overflow && !(current == -1 && PyErr_Occurred()) &&
            !__builtin_add_overflow(current, value, &total)) {
            PyObject *fresh = PyLong_FromLongLong(total);
            if (fresh == NULL)
                return -1;
            PyList_SetItem(list, i, fresh);
            return 0;
        }
        if (PyErr_Occurred())
            return -1;
    }
    PyObject *boxed = PyLong_FromLongLong(value);
    if (boxed == NULL)
        return -1;
    int status = add_to(list, i, boxed);
    Py_DECREF(boxed);
    return status;
}

/* if value > list[i]: list[i] = value, for an int value. */
static int
max_long(PyObject *list, Py_ssize_t i, long long value)
{
    if (check_list(list, i) < 0)
        return -1;
    PyObject *item = PyList_GET_ITEM(list, i);
    if (PyLong_CheckExact(item)) {
        int overflow = 0;
        long long current = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (current == -1 && PyErr_Occurred())
            return -1;
        if (overflow > 0 || (!overflow && value <= current))
            return 0;
        PyObject *fresh = PyLong_FromLongLong(value);
        if (fresh == NULL)
            return -1;
        PyList_SetItem(list, i, fresh);
        return 0;
    }
    PyObject *boxed = PyLong_FromLongLong(value);
    if (boxed == NULL)
        return -1;
    int status = max_to(list, i, boxed);
    Py_DECREF(boxed);
    return status;
}

/* Sketch.add(value) for a float value, as sketch_add. */
static int
sketch_add_double(PyObject *sketch, double v)
{
    if (!(v >= MIN_VALUE)) {
        PyObject *boxed = PyFloat_FromDouble(v);
        if (boxed == NULL)
            return -1;
        int status = sketch_add(sketch, boxed);
        Py_DECREF(boxed);
        return status;
    }
    if (sketch_bump(sketch, v) < 0)
        return -1;
    PyObject *top = field(&sketch_layout, sketch, 1);
    if (top == NULL)
        return -1;
    int greater;
    PyObject *boxed = NULL;
    if (PyFloat_CheckExact(top))
        greater = v > PyFloat_AS_DOUBLE(top);
    else {
        if ((boxed = PyFloat_FromDouble(v)) == NULL) {
            Py_DECREF(top);
            return -1;
        }
        greater = PyObject_RichCompareBool(boxed, top, Py_GT);
    }
    Py_DECREF(top);
    if (greater > 0) {
        if (boxed == NULL && (boxed = PyFloat_FromDouble(v)) == NULL)
            return -1;
        greater = PyObject_SetAttr(sketch, s_max, boxed) < 0 ? -1 : 0;
    }
    Py_XDECREF(boxed);
    return greater < 0 ? -1 : 0;
}

/* A UTC instant in micros since 1970 (within datetime's range) as year, month, day,
 * hour, minute, second, microsecond. */
static void
split_micros(long long micros, int parts[7])
{
    long long days = micros >= 0 ? micros / MICROS_PER_DAY
                                 : -((-micros + MICROS_PER_DAY - 1) / MICROS_PER_DAY);
    long long rest = micros - days * MICROS_PER_DAY; /* in [0, MICROS_PER_DAY) */
    civil_from_days(days, &parts[0], &parts[1], &parts[2]);
    long long seconds = rest / 1000000;
    parts[3] = (int)(seconds / 3600);
    parts[4] = (int)(seconds / 60 % 60);
    parts[5] = (int)(seconds % 60);
    parts[6] = (int)(rest % 1000000);
}

/* parse.timestamp_text of that instant. */
static PyObject *
timestamp_of(long long micros)
{
    int t[7];
    split_micros(micros, t);
    char text[64];
    snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", t[0], t[1], t[2], t[3],
             t[4], t[5], t[6]);
    return PyUnicode_FromString(text);
}

/* Whether an instant (micros since 1970) is no later than the slowest list's floor
 * request (acc[A_SLOWEST_FLOOR_AT], a float, +inf until the list is full): a request as
 * slow as the floor then enters, as aggregate.joins_slowest says. The float rounds
 * monotonically, so an earlier instant is never refused; offer_slowest decides exactly.
 * 1 yes, 0 no, -1 error. */
static int
at_or_before(long long micros, PyObject *acc)
{
    PyObject *at = PyList_GET_ITEM(acc, A_SLOWEST_FLOOR_AT);
    if (PyFloat_CheckExact(at))
        return (double)micros <= PyFloat_AS_DOUBLE(at);
    PyObject *boxed = PyLong_FromLongLong(micros);
    if (boxed == NULL)
        return -1;
    int result = PyObject_RichCompareBool(boxed, at, Py_LE);
    Py_DECREF(boxed);
    return result;
}

/* at_or_before for a decoded record's timestamp: an aware datetime in UTC (to_utc). */
static int
no_later_than_floor(PyObject *acc, PyObject *moment)
{
    if (!PyDateTime_Check(moment)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: a record's timestamp is not a datetime");
        return -1;
    }
    long long days = days_from_civil(PyDateTime_GET_YEAR(moment),
                                      (unsigned)PyDateTime_GET_MONTH(moment),
                                      (unsigned)PyDateTime_GET_DAY(moment));
    long long seconds = PyDateTime_DATE_GET_HOUR(moment) * 3600LL +
                        PyDateTime_DATE_GET_MINUTE(moment) * 60LL +
                        PyDateTime_DATE_GET_SECOND(moment);
    return at_or_before(days * MICROS_PER_DAY + seconds * 1000000LL +
                            PyDateTime_DATE_GET_MICROSECOND(moment),
                        acc);
}

/* The aware datetime of that instant (tzinfo utc), as msgspec and to_utc make it. */
static PyObject *
datetime_of(long long micros, PyObject *utc)
{
    int t[7];
    split_micros(micros, t);
    return PyDateTimeAPI->DateTime_FromDateAndTime(t[0], t[1], t[2], t[3], t[4], t[5], t[6], utc,
                                                   PyDateTimeAPI->DateTimeType);
}

/* A call of one of stats' methods; 0 ok, -1 error. Steals the references in args (which
 * may be NULL after a failed allocation: then it fails). */
static int
call_method(PyObject *stats, PyObject *name, int nargs, PyObject **args)
{
    int failed = 0;
    for (int i = 0; i < nargs; i++)
        failed |= args[i] == NULL;
    PyObject *done = NULL;
    if (!failed) {
        PyObject *call[8] = {stats};
        if (nargs > 7)
            nargs = 7;
        for (int i = 0; i < nargs; i++)
            call[i + 1] = args[i];
        done = PyObject_VectorcallMethod(name, call, (size_t)(nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    for (int i = 0; i < nargs; i++)
        Py_XDECREF(args[i]);
    Py_XDECREF(done);
    return done == NULL ? -1 : 0;
}

/* The objects a parsed line needs besides its numbers (new references, or NULL). */
typedef struct {
    PyObject *method, *route, *view, *interface, *pinned_by, *request_id;
    PyObject *site[P_MAX_SITES][4]; /* site, kind, direction, call_site */
} PObjects;

static void
release_objects(PObjects *o, int nsites)
{
    Py_XDECREF(o->method);
    Py_XDECREF(o->route);
    Py_XDECREF(o->view);
    Py_XDECREF(o->interface);
    Py_XDECREF(o->pinned_by);
    Py_XDECREF(o->request_id);
    for (int i = 0; i < nsites; i++)
        for (int j = 0; j < 4; j++)
            Py_XDECREF(o->site[i][j]);
}

/* add_plain for a parsed line, statement for statement. 0 ok, -1 error. */
static int
add_parsed(PyObject *stats, const PLine *L, PObjects *o)
{
    PyObject *s[S_COUNT] = {NULL};
    int result = -1;
    for (int i = 0; i < S_COUNT; i++) {
        if ((s[i] = field(&stats_layout, stats, i)) == NULL)
            goto done;
    }
    PyObject *acc = s[S_ACC];
    if (add_double(acc, A_DURATION, L->duration) < 0 || add_double(acc, A_HOP_MS, L->hop_ms) < 0 ||
        add_double(acc, A_WAIT, L->wait) < 0 || add_long(acc, A_HOPS, L->hops) < 0 ||
        max_long(acc, A_HOPS_MAX, L->hops) < 0)
        goto done;
    if (sketch_add_double(s[S_SKETCH], L->hop_ms) < 0)
        goto done;
    if (!L->has_overhead) { /* a line from before overhead_ms was written */
        PyObject *args[3] = {PyFloat_FromDouble(L->duration), PyFloat_FromDouble(L->wait),
                             PyLong_FromLongLong(L->hops)};
        if (call_method(stats, s_lacks_overhead, 3, args) < 0)
            goto done;
    }
    else {
        if (add_double(acc, A_OVERHEAD, L->overhead) < 0)
            goto done;
        if (L->has_work && L->work != 0.0 && add_double(acc, A_WORK, L->work) < 0)
            goto done;
        if (sketch_add_double(s[S_OVH_SKETCH], L->overhead) < 0)
            goto done;
    }
    PyObject *c = s[S_COUNTERS];
    if (add_long(c, C_SYNC_TO_ASYNC, L->s2a) < 0 || add_long(c, C_ASYNC_TO_SYNC, L->a2s) < 0 ||
        add_long(c, C_THREADS, L->threads) < 0 || max_long(c, C_THREADS_MAX, L->threads) < 0)
        goto done;
    if (L->loops && (add_long(c, C_NEW_LOOPS, L->loops) < 0 ||
                     add_long(c, C_NEW_LOOP_RECORDS, 1) < 0))
        goto done;
    if (max_long(c, C_DEPTH_MAX, L->depth) < 0)
        goto done;
    /* raw_status[(status, interface, pinned_by)] += 1 */
    if (!PyDict_Check(s[S_RAW_STATUS])) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: raw_status is not a dict");
        goto done;
    }
    PyObject *status = status_object(L->status);
    if (status == NULL)
        goto done;
    PyObject *key = PyTuple_Pack(3, status, o->interface, o->pinned_by);
    Py_DECREF(status);
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
    if (!L->has_pinned) { /* a line from before pinned_ms existed */
        if (add_long(pin, 1, 1) < 0)
            goto done;
    }
    else if (L->pinned != 0.0 &&
             (add_double(pin, 0, L->pinned) < 0 || add_double(pin, 2, L->pinned) < 0))
        goto done;
    if (check_list(acc, A_SLOWEST_FLOOR) < 0 || check_list(acc, A_SLOWEST_FLOOR_AT) < 0)
        goto done;
    PyObject *floor = PyList_GET_ITEM(acc, A_SLOWEST_FLOOR);
    int slow;
    if (PyFloat_CheckExact(floor)) {
        double hop_floor = PyFloat_AS_DOUBLE(floor);
        slow = L->hop_ms > hop_floor;
        if (!slow && L->hop_ms == hop_floor && (slow = at_or_before(L->micros, acc)) < 0)
            goto done;
    }
    else {
        PyObject *boxed = PyFloat_FromDouble(L->hop_ms);
        if (boxed == NULL)
            goto done;
        slow = PyObject_RichCompareBool(boxed, floor, Py_GT);
        if (slow == 0) {
            slow = PyObject_RichCompareBool(boxed, floor, Py_EQ);
            if (slow > 0)
                slow = at_or_before(L->micros, acc);
        }
        Py_DECREF(boxed);
        if (slow < 0)
            goto done;
    }
    if (slow) {
        PyObject *request_id = o->request_id;
        if (request_id == NULL)
            request_id = make_str(&L->request_id);
        else
            Py_INCREF(request_id);
        if (request_id == NULL && !PyErr_Occurred()) /* checked by take_parsed */
            PyErr_SetString(PyExc_ValueError, "hopwatch: request_id is not UTF-8");
        PyObject *args[3] = {PyFloat_FromDouble(L->hop_ms), request_id, timestamp_of(L->micros)};
        if (call_method(stats, s_offer_slowest, 3, args) < 0)
            goto done;
    }
    if (L->has_tax) {
        PyObject *args[4] = {PyLong_FromLongLong(L->hops), PyFloat_FromDouble(L->tax),
                             (Py_INCREF(one_float), one_float), PyFloat_FromDouble(L->duration)};
        if (call_method(stats, s_add_tax, 4, args) < 0)
            goto done;
    }
    if (L->has_db) { /* EndpointStats.add_concurrency */
        PyObject *con = s[S_CONCURRENCY];
        if (add_long(con, 0, 1) < 0 || add_long(con, 1, L->db) < 0 || max_long(con, 2, L->db) < 0)
            goto done;
        if (L->has_in_flight) {
            if (add_long(con, 3, 1) < 0 || add_long(con, 4, L->in_flight) < 0 ||
                max_long(con, 5, L->in_flight) < 0)
                goto done;
            /* concurrent_ms or 0.0 */
            double concurrent = L->has_concurrent && L->concurrent != 0.0 ? L->concurrent : 0.0;
            if (add_double(con, 6, concurrent) < 0)
                goto done;
        }
    }
    /* each sites entry into stats.sites, as add_site (the dict read again for each: a new
     * cause can make _add_site trim the causes, which replaces it) */
    for (int i = 0; i < L->nsites; i++) {
        const PSite *site = &L->sites[i];
        Py_XSETREF(s[S_SITES], field(&stats_layout, stats, S_SITES));
        PyObject *sites = s[S_SITES];
        if (sites == NULL)
            goto done;
        if (!PyDict_Check(sites)) {
            PyErr_SetString(PyExc_TypeError, "hopwatch: sites is not a dict");
            goto done;
        }
        PyObject **names = o->site[i];
        PyObject *site_key = PyTuple_Pack(4, names[0], names[1], names[2], names[3]);
        if (site_key == NULL)
            goto done;
        PyObject *entry = PyDict_GetItemWithError(sites, site_key); /* borrowed */
        int failed = 0;
        double overhead = site->has_overhead ? site->overhead : 0.0;
        long long measured = site->has_overhead ? 1 : 0;
        if (entry == NULL) {
            if (PyErr_Occurred())
                failed = 1;
            else { /* a new cause: EndpointStats._add_site decides */
                Py_INCREF(site_key);
                Py_INCREF(one);
                PyObject *args[6] = {
                    site_key, one, PyLong_FromLongLong(site->count), PyFloat_FromDouble(site->ms),
                    PyFloat_FromDouble(overhead), PyLong_FromLongLong(measured)};
                failed = call_method(stats, s_add_site, 6, args) < 0;
            }
        }
        else if (PyList_Check(entry) && PyList_GET_SIZE(entry) >= 5) {
            Py_INCREF(entry); /* kept alive while its items are replaced */
            failed = add_long(entry, 0, 1) < 0 || add_long(entry, 1, site->count) < 0 ||
                     add_double(entry, 2, site->ms) < 0 || add_double(entry, 3, overhead) < 0 ||
                     add_long(entry, 4, measured) < 0;
            Py_DECREF(entry);
        }
        else {
            PyErr_SetString(PyExc_TypeError, "hopwatch: a sites entry is not a list of 5");
            failed = 1;
        }
        Py_DECREF(site_key);
        if (failed)
            goto done;
    }
    result = 0;
done:
    for (int i = 0; i < S_COUNT; i++)
        Py_XDECREF(s[i]);
    return result;
}

/* math.fsum(values[0:n]) for finite values, bit for bit: CPython's algorithm (Shewchuk's
 * exact partials, then the half-even correction across partials), without its handling
 * of infinities, NaNs and overflow (a parsed value is below 1e9). n <= P_MAX_SITES. */
static double
exact_sum(const double *values, int n)
{
    double partials[P_MAX_SITES + 1], x, y, t, hi, yr, lo = 0.0;
    int used = 0;
    for (int k = 0; k < n; k++) {
        x = values[k];
        int i = 0;
        for (int j = 0; j < used; j++) {
            y = partials[j];
            if (fabs(x) < fabs(y)) {
                t = x;
                x = y;
                y = t;
            }
            hi = x + y;
            yr = hi - x;
            lo = y - yr;
            if (lo != 0.0)
                partials[i++] = lo;
            x = hi;
        }
        used = i;
        if (x != 0.0)
            partials[used++] = x;
    }
    hi = 0.0;
    if (used > 0) {
        hi = partials[--used];
        while (used > 0) { /* from the top, until the sum becomes inexact */
            x = hi;
            y = partials[--used];
            hi = x + y;
            yr = hi - x;
            lo = y - yr;
            if (lo != 0.0)
                break;
        }
        if (used > 0 && ((lo < 0.0 && partials[used - 1] < 0.0) ||
                         (lo > 0.0 && partials[used - 1] > 0.0))) {
            y = lo * 2.0;
            x = hi + y;
            yr = x - hi;
            if (y == yr)
                hi = x;
        }
    }
    return hi;
}

/* left_out_record for a parsed line: stats.sites_dropped += it and, when its sites count
 * fewer crossings than its hops, EndpointStats.add_left_out's sums, statement for
 * statement (weight 1.0). 0 ok, -1 error. */
static int
left_out_parsed(PyObject *stats, const PLine *L)
{
    if (!L->sites_dropped)
        return 0;
    if (add_sites_dropped(stats, NULL, L->sites_dropped) < 0)
        return -1;
    long long counted = 0;
    double listed[P_MAX_SITES];
    for (int i = 0; i < L->nsites; i++) {
        counted += L->sites[i].count;
        listed[i] = L->sites[i].ms;
    }
    if (L->hops <= counted)
        return 0;
    PyObject *left = PyObject_GetAttr(stats, s_unattributed);
    if (left == NULL)
        return -1;
    int failed = add_double(left, U_REQUESTS, 1.0) < 0 ||
                 add_double(left, U_COUNT, (double)(L->hops - counted)) < 0;
    double rest = L->hop_ms - exact_sum(listed, L->nsites);
    if (0.0 > rest) /* max(rest, 0.0) */
        rest = 0.0;
    failed = failed || add_double(left, U_MS, rest) < 0;
    if (!failed && L->has_overhead) {
        for (int i = 0; i < L->nsites; i++) { /* site.overhead_ms or 0.0 */
            const PSite *site = &L->sites[i];
            listed[i] = site->has_overhead && site->overhead != 0.0 ? site->overhead : 0.0;
        }
        rest = L->overhead - exact_sum(listed, L->nsites);
        if (0.0 > rest)
            rest = 0.0;
        failed = add_double(left, U_OVERHEAD, rest) < 0 ||
                 add_double(left, U_OVH_REQUESTS, 1.0) < 0;
    }
    Py_DECREF(left);
    return failed ? -1 : 0;
}

/* The UTC bounds of the lines the parser took in one scan() call. */
typedef struct {
    int any;
    long long first, last;
} Span;

/* A parsed line into its endpoint: 1 counted, 0 not taken (a string that is not UTF-8),
 * -1 error. */
static int
take_parsed(const PLine *L, PyObject *by_key, PyObject *new_endpoint, Span *seen)
{
    PObjects o;
    /* every pointer NULL until made (the sites' too), so that one release frees them */
    memset(&o, 0, offsetof(PObjects, site) + sizeof(o.site[0]) * (size_t)L->nsites);
    int made = 0, result = -1;
    PyObject *key = NULL, *stats = NULL;
#define MAKE(target, text)                                        \
    do {                                                          \
        if (((target) = str_of(text)) == NULL)                    \
            goto refused;                                         \
    } while (0)
    MAKE(o.method, &L->method);
    MAKE(o.route, &L->route);
    MAKE(o.view, &L->view);
    MAKE(o.interface, &L->interface);
    MAKE(o.pinned_by, &L->pinned_by);
    if (L->request_id.flags) /* escaped or not ASCII: must be a str msgspec can make */
        MAKE(o.request_id, &L->request_id);
    for (; made < L->nsites; made++) {
        const PSite *site = &L->sites[made];
        MAKE(o.site[made][0], &site->site);
        MAKE(o.site[made][1], &site->kind);
        MAKE(o.site[made][2], &site->direction);
        MAKE(o.site[made][3], &site->call_site);
    }
#undef MAKE
    if (!seen->any || L->micros < seen->first)
        seen->first = L->micros;
    if (!seen->any || L->micros > seen->last)
        seen->last = L->micros;
    seen->any = 1;
    if ((key = PyTuple_Pack(3, o.method, o.route, o.view)) == NULL)
        goto done;
    stats = PyDict_GetItemWithError(by_key, key);
    if (stats != NULL)
        Py_INCREF(stats);
    else if (PyErr_Occurred() || (stats = PyObject_CallOneArg(new_endpoint, key)) == NULL)
        goto done;
    if (left_out_parsed(stats, L) < 0 || add_parsed(stats, L, &o) < 0)
        goto done;
    result = 1;
    goto done;
refused:
    result = PyErr_Occurred() ? -1 : 0;
done:
    release_objects(&o, L->nsites);
    Py_XDECREF(key);
    Py_XDECREF(stats);
    return result;
}

/* The bounds the parser saw into scan()'s bounds list, as take_record keeps them. */
static int
flush_span(const Span *seen, PyObject *bounds, PyObject *utc)
{
    if (!seen->any)
        return 0;
    if (!PyList_Check(bounds) || PyList_GET_SIZE(bounds) != 3) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: bounds is not a list of 3");
        return -1;
    }
    PyObject *first = datetime_of(seen->first, utc);
    if (first == NULL)
        return -1;
    int earlier = PyObject_RichCompareBool(first, PyList_GET_ITEM(bounds, 0), Py_LT);
    if (earlier > 0)
        PyList_SetItem(bounds, 0, first);
    else
        Py_DECREF(first);
    if (earlier < 0)
        return -1;
    PyObject *last = datetime_of(seen->last, utc);
    if (last == NULL)
        return -1;
    int later = PyObject_RichCompareBool(last, PyList_GET_ITEM(bounds, 1), Py_GT);
    if (later > 0)
        PyList_SetItem(bounds, 1, last);
    else
        Py_DECREF(last);
    return later < 0 ? -1 : 0;
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

/* parse.LINE_ENDING: how the emitter ends every line (a test checks they agree). */
static const char LINE_ENDING[] = ",\"level\":\"info\",\"logger\":\"hopwatch\"}";

/* parse.torn_tail: whether a line that is no record (and holds neither marker) ends as
 * the emitter ends its lines, then only blanks: the tail of a torn hopwatch line, which
 * the Python loop counts as skipped ("torn"). Asked of the lines that are no record
 * only. */
static int
torn_tail(const char *line, Py_ssize_t size)
{
    while (size > 0 && (line[size - 1] == ' ' || line[size - 1] == '\t' || line[size - 1] == '\r'))
        size--;
    Py_ssize_t ending = (Py_ssize_t)sizeof(LINE_ENDING) - 1;
    return size >= ending && memcmp(line + size - ending, LINE_ENDING, (size_t)ending) == 0;
}

/* --- envelopes: the line inside a log shipper's wrapper -------------------------------
 *
 * docker's json-file driver writes {"log": "<the line, JSON-escaped>\n", "stream": ...,
 * "time": ...}, a logging JSON formatter {"message": "<the line>", ...}, Loki's logcli
 * {"labels": {...}, "line": "<the line>", ...}. (An exported entry holding the line as an
 * object, parse.PAYLOAD_KEYS, and Fluent Bit's out_file line are the Python loop's: this
 * finds no wrapper key holding a line in the one, and is not sure of the other.) The Python loop
 * reads them with parse.decode_envelope and parse.envelope_line, then decodes the inner
 * line; unwrap() finds the same inner line (decoded into a buffer of its own), so that
 * parse_line can read it. Only when it is sure of the answer: ENV_NONE when no wrapper key
 * holds a hopwatch line, so that decode_envelope/envelope_line give nothing (or fail);
 * ENV_INNER with the inner line when they give that line, and the Python loop, whichever
 * mode it is in and whether or not its learning decoder knows the line's values, would
 * end up with the record decoded from it (counted as enveloped); ENV_UNSURE otherwise
 * (the Python loop's). Its JSON reading is msgspec's or stricter (skip_value), so that
 * what it reads, msgspec reads the same. */
enum { E_LOG, E_MESSAGE, E_MSG, E_MESSAGE_UPPER, E_LINE, E_EVENT, E_COUNT };
/* parse.WRAPPER_KEYS, in its order (a test checks), and the record's "event". */
static const char *const envelope_keys[E_COUNT] = {"log",     "message", "msg",
                                                   "MESSAGE", "line",    "event"};
static Py_ssize_t envelope_key_lengths[E_COUNT];
#define E_WRAPPERS E_EVENT
/* scan.ESCAPED_MARKER: the marker as it reads inside a string value (a test checks). */
static const char ESCAPED_MARKER[] = "\\\"hopwatch.request\\\"";
enum { ENV_ERROR = -2, ENV_UNSURE = -1, ENV_NONE = 0, ENV_INNER = 1 };

/* A growable byte buffer (the inner line decoded), reused from line to line. Its size is
 * bounded by the longest line unwrapped (an escape never decodes to more bytes). */
typedef struct {
    unsigned char *p;
    Py_ssize_t size;
} Bytes;

static int
reserve(Bytes *b, Py_ssize_t n)
{
    if (n <= b->size)
        return 0;
    Py_ssize_t size = n < 4096 ? 4096 : n;
    unsigned char *p = PyMem_Realloc(b->p, (size_t)size);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->size = size;
    return 0;
}

/* The string whose opening quote is at p, as read_string reads it (NULL: invalid or cut
 * short), decoded into out in the same pass: its length into *n, S_HIGH into *flags when
 * it has a byte >= 0x80 (its escapes decode to valid UTF-8, so the result is UTF-8 when
 * its raw bytes are). out must have room for end - p bytes: runs are copied 8 bytes at a
 * time, and the output never gets ahead of the input. */
static const unsigned char *
read_decoded(const unsigned char *p, const unsigned char *end, unsigned char *out,
             Py_ssize_t *n, unsigned *flags)
{
    unsigned char *o = out;
    unsigned f = 0;
    p++;
    for (;;) {
        while (end - p >= 8) {
            memcpy(o, p, 8); /* the bytes before the first special one are the output */
            int offset = first_special(p);
            p += offset;
            o += offset;
            if (offset < 8)
                break;
        }
        if (p >= end)
            return NULL;
        unsigned char c = *p;
        if (c == '"') {
            *n = o - out;
            *flags = f;
            return p + 1;
        }
        if (c == '\\') {
            if ((p = decode_escape(p, end, &o)) == NULL)
                return NULL;
            continue;
        }
        if (c < 0x20)
            return NULL;
        if (c >= 0x80)
            f |= S_HIGH;
        *o++ = c;
        p++;
    }
}

/* The envelope whose "{" is at p[0] (p[0:size] the line from it): ENV_INNER with the
 * inner line (*inner, *inner_size: in buffer or in p), ENV_NONE, ENV_UNSURE, or
 * ENV_ERROR (an exception set: out of memory). */
static int
unwrap(const unsigned char *p, Py_ssize_t size, Bytes *buffer, const unsigned char **inner,
       Py_ssize_t *inner_size)
{
    /* A record in a string value needs its quotes escaped: without a backslash no wrapper
     * key can hold one (and the Python loop finds none to decode). */
    if (memchr(p, '\\', (size_t)size) == NULL)
        return ENV_NONE;
    const unsigned char *start = p, *end = p + size;
    /* each wrapper key's string value decoded, one after the other in the buffer (they
     * take no more than the line), and where it is in the line */
    struct {
        Py_ssize_t at, n; /* in buffer; at -1: null */
        const unsigned char *raw, *raw_end;
    } values[E_WRAPPERS];
    Py_ssize_t used = 0;
    if (reserve(buffer, size + 8) < 0)
        return ENV_ERROR;
    unsigned seen = 0; /* a bit per E_* key found */
    signed char hint = -1;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}')
        p++;
    else {
        for (;;) {
            Str key;
            if (p >= end || *p != '"' || (p = read_string(p, end, &key)) == NULL)
                return ENV_UNSURE;
            if ((key.flags & S_HIGH) && !valid_utf8(key.p, key.n))
                return ENV_UNSURE;
            int id = key_index(&key, envelope_keys, envelope_key_lengths, E_COUNT, &hint);
            p = skip_ws(p, end);
            if (p >= end || *p != ':')
                return ENV_UNSURE;
            p = skip_ws(p + 1, end);
            if (p >= end)
                return ENV_UNSURE;
            if (id >= 0 && id < E_WRAPPERS) {
                if (seen & (1u << id))
                    return ENV_UNSURE; /* a duplicate: which one msgspec keeps is its own */
                if (*p == '"') {
                    Py_ssize_t n;
                    unsigned flags;
                    values[id].raw = p;
                    p = read_decoded(p, end, buffer->p + used, &n, &flags);
                    if (p == NULL)
                        return ENV_UNSURE;
                    if ((flags & S_HIGH) && !valid_utf8(buffer->p + used, n))
                        return ENV_UNSURE;
                    values[id].raw_end = p;
                    values[id].at = used;
                    values[id].n = n;
                    used += n;
                }
                else if (is_null(p, end)) { /* None for envelope_line: not a str */
                    values[id].at = -1;
                    p += 4;
                }
                else
                    return ENV_UNSURE; /* another value, as msgspec's Any reads it: Python's */
            }
            else if ((p = skip_value(p, end, 1)) == NULL)
                return ENV_UNSURE;
            if (id >= 0)
                seen |= 1u << id;
            p = skip_ws(p, end);
            if (p >= end)
                return ENV_UNSURE;
            if (*p == '}') {
                p++;
                break;
            }
            if (*p != ',')
                return ENV_UNSURE;
            p = skip_ws(p + 1, end);
        }
    }
    if (skip_ws(p, end) != end) /* trailing characters: msgspec refuses the line */
        return ENV_UNSURE;
    /* parse.envelope_line: the first wrapper key, in its order, whose str value holds the
     * event and a "{": from that "{", its trailing newlines stripped */
    for (int id = 0; id < E_WRAPPERS; id++) {
        if (!(seen & (1u << id)) || values[id].at < 0)
            continue;
        const unsigned char *text = buffer->p + values[id].at;
        Py_ssize_t n = values[id].n;
        if (!contains((const char *)text, (size_t)n, EVENT, sizeof(EVENT) - 1))
            continue;
        const unsigned char *brace = memchr(text, '{', (size_t)n);
        if (brace == NULL)
            continue;
        /* The outer line must not be a record itself (no "event" key: msgspec refuses it
         * whatever the rest), and must have the escaped marker, by which the Python loop
         * looks in the envelope when its learning decoder refuses the inner line. */
        if (seen & (1u << E_EVENT))
            return ENV_UNSURE;
        /* (the marker is usually in the value itself, near its start) */
        if (!contains((const char *)values[id].raw, (size_t)(values[id].raw_end - values[id].raw),
                      ESCAPED_MARKER, sizeof(ESCAPED_MARKER) - 1) &&
            !contains((const char *)start, (size_t)size, ESCAPED_MARKER,
                      sizeof(ESCAPED_MARKER) - 1))
            return ENV_UNSURE;
        n -= brace - text;
        while (n > 0 && brace[n - 1] == '\n')
            n--;
        *inner = brace;
        *inner_size = n;
        return ENV_INNER;
    }
    return ENV_NONE;
}

/* A line's record read by the parser into its endpoint: 1 taken, 0 not (msgspec's), -1
 * error. */
static int
take_line(const unsigned char *p, Py_ssize_t size, PLine *line, PyObject *by_key,
          PyObject *new_endpoint, Span *seen)
{
    if (parse_line(p, size, line) < 0)
        return 0;
    return take_parsed(line, by_key, new_endpoint, seen);
}

/* scan(buffer, position, end, decode, errors, by_key, bounds, to_utc, new_endpoint, utc,
 *      max_line[, parse[, prefilter[, wrapped]]]) -> (position, lines, records, parsed,
 *      enveloped)
 *
 * Scanner.feed's loop over buffer[position:end] for the usual case (no envelope, no
 * filter, no tap): with prefilter, a line without the marker is another line (or,
 * with the process line's marker, Python's); each line's JSON object (from its first
 * "{") read by the line parser above (unless parse is false), else decoded by
 * ``decode``; a line without "{" counted as another line. It returns at the first
 * line Python must look at (too long, refused by the decoder: another logger's JSON,
 * a broken or new-valued line; a timestamp out of range; a process line; a line that is
 * no record but ends as hopwatch's lines end, a torn line's tail: torn_tail), its
 * position first, having counted the lines before it; parsed: the records the
 * parser read. A line in a shipper's envelope is unwrapped (unwrap, above) and its inner
 * line read by the parser where the Python loop would decode it: first with wrapped (the
 * loop's mode after a buffer of mostly enveloped records), else after the line itself is
 * refused; enveloped: those records (the loop's count, which sets its mode). */
static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 11 || nargs > 14) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 11 to 14 arguments");
        return NULL;
    }
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "hopwatch.report._accumulate: configure() first");
        return NULL;
    }
    int use_parser = nargs >= 12 ? PyObject_IsTrue(args[11]) : 1;
    int prefilter = nargs >= 13 ? PyObject_IsTrue(args[12]) : 0;
    int wrapped = nargs >= 14 ? PyObject_IsTrue(args[13]) : 0;
    if (use_parser < 0 || prefilter < 0 || wrapped < 0)
        return NULL;
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
    if (position < 0) {
        PyErr_SetString(PyExc_ValueError, "scan(): position must not be negative");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (end > view.len)
        end = view.len;
    const char *buf = (const char *)view.buf;
    Py_ssize_t lines = 0, records = 0, parsed = 0, enveloped = 0;
    int failed = 0;
    Bytes unwrapped = {NULL, 0}; /* an envelope's inner line, decoded */
    PLine *line_values = NULL; /* the parser's record (about 8 KB: one per call) */
    if (use_parser && str_cache != NULL && (line_values = PyMem_Malloc(sizeof(PLine))) == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Span seen = {0, 0, 0};
    if (wrapped && line_values == NULL)
        end = position; /* the envelope first needs the parser: all the Python loop's */
    while (position < end) {
        const char *newline = memchr(buf + position, '\n', (size_t)(end - position));
        Py_ssize_t stop = newline != NULL ? newline - buf : end;
        if (stop - position > max_line)
            break;
        Py_ssize_t start = position;
        if (prefilter && !contains(buf + start, (size_t)(stop - start), MARKER, sizeof(MARKER) - 1)) {
            if (contains(buf + start, (size_t)(stop - start), PROCESS_MARKER,
                         sizeof(PROCESS_MARKER) - 1))
                break; /* a process line: Python's */
            if (torn_tail(buf + start, stop - start))
                break; /* a torn line's tail: the Python loop skips it */
            lines++;
            position = stop + 1;
            continue;
        }
        if (buf[start] != '{') { /* a prefix (container runtime, pod name) first */
            const char *brace = memchr(buf + start, '{', (size_t)(stop - start));
            if (brace == NULL) { /* an other line, or a torn line's tail: Python's */
                size_t length = (size_t)(stop - start);
                if (torn_tail(buf + start, stop - start) &&
                    !contains(buf + start, length, MARKER, sizeof(MARKER) - 1) &&
                    !contains(buf + start, length, PROCESS_MARKER, sizeof(PROCESS_MARKER) - 1))
                    break;
                lines++;
                position = stop + 1;
                continue;
            }
            start = brace - buf;
        }
        const unsigned char *text = (const unsigned char *)buf + start, *inner = NULL;
        Py_ssize_t size = stop - start, inner_size = 0;
        if (line_values != NULL) {
            /* the envelope first when the loop is in its wrapped mode: what it cannot be
             * sure of is the Python loop's */
            int envelope = wrapped ? unwrap(text, size, &unwrapped, &inner, &inner_size)
                                   : ENV_NONE;
            int taken = 0;
            if (envelope == ENV_INNER &&
                (taken = take_line(inner, inner_size, line_values, by_key, new_endpoint,
                                   &seen)) > 0)
                enveloped++;
            else if (envelope == ENV_NONE) {
                taken = take_line(text, size, line_values, by_key, new_endpoint, &seen);
                /* refused, the Python loop's fallback looks in an envelope with the
                 * escaped marker (never an outer record: unwrap sees no "event" key) */
                if (taken == 0 && !wrapped &&
                    contains((const char *)text, (size_t)size, ESCAPED_MARKER,
                             sizeof(ESCAPED_MARKER) - 1)) {
                    envelope = unwrap(text, size, &unwrapped, &inner, &inner_size);
                    if (envelope == ENV_INNER &&
                        (taken = take_line(inner, inner_size, line_values, by_key,
                                           new_endpoint, &seen)) > 0)
                        enveloped++;
                }
            }
            if (envelope == ENV_ERROR || taken < 0) {
                failed = 1;
                break;
            }
            if (taken > 0) {
                lines++;
                records++;
                parsed++;
                position = stop + 1;
                continue;
            }
            if (wrapped && envelope != ENV_NONE)
                break; /* an envelope it is not sure of: the Python loop's */
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
            /* another logger's JSON (no marker, nor the process line's, nor a torn
             * line's ending): an other line, as the Python loop counts it; anything else
             * is the Python loop's */
            size_t length = (size_t)(stop - start);
            if (contains(buf + start, length, MARKER, sizeof(MARKER) - 1) ||
                contains(buf + start, length, PROCESS_MARKER, sizeof(PROCESS_MARKER) - 1) ||
                torn_tail(buf + start, stop - start))
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
    PyMem_Free(line_values);
    PyMem_Free(unwrapped.p);
    if (!failed && flush_span(&seen, bounds, utc) < 0)
        failed = 1;
    if (failed)
        return NULL;
    return Py_BuildValue("(nnnnn)", position, lines, records, parsed, enveloped);
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
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
        {"A_OVERHEAD", &A_OVERHEAD}, {"A_WORK", &A_WORK},
        {"A_SLOWEST_FLOOR_AT", &A_SLOWEST_FLOOR_AT}, {"C_SYNC_TO_ASYNC", &C_SYNC_TO_ASYNC},
        {"C_ASYNC_TO_SYNC", &C_ASYNC_TO_SYNC}, {"C_THREADS", &C_THREADS},
        {"C_THREADS_MAX", &C_THREADS_MAX}, {"C_NEW_LOOPS", &C_NEW_LOOPS},
        {"C_NEW_LOOP_RECORDS", &C_NEW_LOOP_RECORDS}, {"C_DEPTH_MAX", &C_DEPTH_MAX},
        {"S_REQUESTS", &U_REQUESTS}, {"S_COUNT", &U_COUNT}, {"S_MS", &U_MS},
        {"S_OVERHEAD", &U_OVERHEAD}, {"S_OVH_REQUESTS", &U_OVH_REQUESTS},
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

/* parse(line) -> dict | None: what the line parser reads from one line (its JSON object
 * from the first "{"), in parse.Record's terms: every field add_plain reads and
 * sites_dropped, "sites" a list of dicts, the timestamp an aware datetime in UTC; None
 * when it would not take the line. For tests: they check it against msgspec's decode_record line by line. */
static PyObject *
number_or_none(int has, double value)
{
    if (!has)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(value);
}

static PyObject *
parse_one(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *text = view.buf;
    const char *brace = memchr(text, '{', (size_t)view.len);
    PLine *L = PyMem_Malloc(sizeof(PLine));
    PyObject *out = NULL, *sites = NULL;
    if (L == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (brace == NULL || parse_line((const unsigned char *)brace, view.len - (brace - text), L) < 0) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *names[6] = {NULL};
    const Str *texts[6] = {&L->request_id, &L->method, &L->route, &L->view, &L->interface,
                           &L->pinned_by};
    int refused = 0;
    for (int i = 0; i < 6 && !refused; i++)
        refused = (names[i] = str_of(texts[i])) == NULL;
    if (!refused && (sites = PyList_New(0)) != NULL) {
        for (int i = 0; i < L->nsites && !refused; i++) {
            const PSite *s = &L->sites[i];
            PyObject *site = str_of(&s->site), *kind = site ? str_of(&s->kind) : NULL;
            PyObject *direction = kind ? str_of(&s->direction) : NULL;
            PyObject *call_site = direction ? str_of(&s->call_site) : NULL;
            PyObject *entry = NULL;
            if (call_site != NULL)
                entry = Py_BuildValue("{sOsOsOsLsdsOsN}", "site", site, "kind", kind,
                                      "direction", direction, "count", s->count, "ms", s->ms,
                                      "call_site", call_site, "overhead_ms",
                                      number_or_none(s->has_overhead, s->overhead));
            refused = entry == NULL || PyList_Append(sites, entry) < 0;
            Py_XDECREF(entry);
            Py_XDECREF(site);
            Py_XDECREF(kind);
            Py_XDECREF(direction);
            Py_XDECREF(call_site);
        }
    }
    if (!refused && sites != NULL) {
        PyObject *status = status_object(L->status);
        out = status == NULL ? NULL : Py_BuildValue(
            "{sNsOsOsOsOsOsOsdsLsdsdsLsLsLsLsLsOsNsOsNsNsNsNsNsN}",
            "timestamp", datetime_of(L->micros, PyDateTimeAPI->TimeZone_UTC),
            "request_id", names[0], "method", names[1], "route", names[2], "view", names[3],
            "status", status, "interface", names[4], "duration_ms", L->duration,
            "hops", L->hops, "hop_ms", L->hop_ms, "wait_ms", L->wait, "sync_to_async", L->s2a,
            "async_to_sync", L->a2s, "threads", L->threads, "new_loops", L->loops,
            "max_depth", L->depth, "sites", sites,
            "pinned_ms", number_or_none(L->has_pinned, L->pinned), "pinned_by", names[5],
            "hop_tax_us", number_or_none(L->has_tax, L->tax),
            "max_in_flight", L->has_in_flight ? PyLong_FromLongLong(L->in_flight)
                                              : Py_NewRef(Py_None),
            "concurrent_ms", number_or_none(L->has_concurrent, L->concurrent),
            "db_connections", L->has_db ? PyLong_FromLongLong(L->db) : Py_NewRef(Py_None),
            "overhead_ms", number_or_none(L->has_overhead, L->overhead),
            "work_ms", number_or_none(L->has_work, L->work));
        if (out != NULL) {
            PyObject *dropped = PyLong_FromLongLong(L->sites_dropped);
            if (dropped == NULL || PyDict_SetItemString(out, "sites_dropped", dropped) < 0)
                Py_CLEAR(out);
            Py_XDECREF(dropped);
        }
        Py_XDECREF(status);
    }
    else if (!PyErr_Occurred())
        out = Py_NewRef(Py_None); /* a string that is not UTF-8: not taken */
    for (int i = 0; i < 6; i++)
        Py_XDECREF(names[i]);
done:
    Py_XDECREF(sites);
    PyMem_Free(L);
    PyBuffer_Release(&view);
    return out;
}

/* unwrap(line) -> bytes | None | False: what unwrap() makes of a line's JSON object (from
 * its first "{"): the inner line, None (no hopwatch line in it), False (not sure). For
 * tests: they check it against parse.envelope_line(parse.decode_envelope(line)). */
static PyObject *
unwrap_one(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *text = view.buf, *inner = NULL;
    const unsigned char *brace = memchr(text, '{', (size_t)view.len);
    Py_ssize_t inner_size = 0;
    Bytes buffer = {NULL, 0};
    PyObject *out = NULL;
    int found = brace == NULL ? ENV_NONE
                              : unwrap(brace, view.len - (brace - text), &buffer, &inner,
                                       &inner_size);
    if (found == ENV_INNER)
        out = PyBytes_FromStringAndSize((const char *)inner, inner_size);
    else if (found == ENV_NONE)
        out = Py_NewRef(Py_None);
    else if (found == ENV_UNSURE)
        out = Py_NewRef(Py_False);
    PyMem_Free(buffer.p);
    PyBuffer_Release(&view);
    return out;
}

/* fsum(floats) -> float: exact_sum of at most P_MAX_SITES floats (for tests: they check it
 * against math.fsum). */
static PyObject *
fsum_one(PyObject *module, PyObject *arg)
{
    (void)module;
    double values[P_MAX_SITES];
    PyObject *seq = PySequence_Fast(arg, "fsum() takes a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > P_MAX_SITES) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "fsum(): too many values");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        values[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (values[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    return PyFloat_FromDouble(exact_sum(values, (int)n));
}

static PyMethodDef methods[] = {
    {"fsum", (PyCFunction)fsum_one, METH_O,
     "fsum(floats): math.fsum of at most 64 finite floats, as the parser sums (for tests)."},
    {"unwrap", (PyCFunction)unwrap_one, METH_O,
     "unwrap(line): the line in a shipper's envelope, None, or False (for tests)."},
    {"parse", (PyCFunction)parse_one, METH_O,
     "parse(line): what the line parser reads from a line, or None (for tests)."},
    {"add", (PyCFunction)(void (*)(void))accumulate, METH_FASTCALL,
     "add(stats, record): add a plain record to an EndpointStats (see scan.py)."},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(...): Scanner.feed's loop for the usual case (see the C source)."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(indices, min_value, inv_ln_gamma, shift, timestamp_text)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hopwatch.report._accumulate",
    .m_doc = "The report's per-record accumulation in C (see hopwatch.report.scan).",
    .m_size = -1,
    .m_methods = methods,
};

/* PyModule_AddObjectRef for a new reference (or NULL: an error), which it releases. */
static int
add_owned(PyObject *module, const char *name, PyObject *value)
{
    if (value == NULL)
        return -1;
    int status = PyModule_AddObjectRef(module, name, value);
    Py_DECREF(value);
    return status;
}

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
    INTERN(s_add_site, "_add_site");
    INTERN(s_unattributed, "unattributed");
    INTERN(s_add_left_out, "add_left_out");
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
    for (int i = 0; i < K_COUNT; i++)
        record_key_lengths[i] = (Py_ssize_t)strlen(record_keys[i]);
    for (int i = 0; i < SK_ALL; i++)
        site_key_lengths[i] = (Py_ssize_t)strlen(site_keys[i]);
    for (int i = 0; i < E_COUNT; i++)
        envelope_key_lengths[i] = (Py_ssize_t)strlen(envelope_keys[i]);
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if (str_cache == NULL && (str_cache = PyMem_Calloc(CACHE_SLOTS, sizeof(CacheSlot))) == NULL)
        return PyErr_NoMemory();
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    PyObject *record_fields = PyTuple_New(K_COUNT), *site_fields = PyTuple_New(SK_ALL);
    for (int i = 0; record_fields != NULL && i < K_COUNT; i++) {
        PyObject *name = PyUnicode_FromString(record_keys[i]);
        if (name == NULL)
            Py_CLEAR(record_fields);
        else
            PyTuple_SET_ITEM(record_fields, i, name);
    }
    for (int i = 0; site_fields != NULL && i < SK_ALL; i++) {
        PyObject *name = PyUnicode_FromString(site_keys[i]);
        if (name == NULL)
            Py_CLEAR(site_fields);
        else
            PyTuple_SET_ITEM(site_fields, i, name);
    }
    /* the fields the parser reads (a test checks they are parse.Record's and Site's) */
    if (add_owned(module, "RECORD_FIELDS", record_fields) < 0 ||
        add_owned(module, "SITE_FIELDS", site_fields) < 0 ||
        PyModule_AddIntConstant(module, "MAX_SITES", P_MAX_SITES) < 0 ||
        PyModule_AddIntConstant(module, "MAX_DEPTH", P_MAX_DEPTH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    PyObject *wrappers = Py_BuildValue("(sssss)", envelope_keys[E_LOG], envelope_keys[E_MESSAGE],
                                       envelope_keys[E_MSG], envelope_keys[E_MESSAGE_UPPER],
                                       envelope_keys[E_LINE]);
    if (add_owned(module, "MARKER", PyBytes_FromString(MARKER)) < 0 ||
        add_owned(module, "PROCESS_MARKER", PyBytes_FromString(PROCESS_MARKER)) < 0 ||
        add_owned(module, "ESCAPED_MARKER", PyBytes_FromString(ESCAPED_MARKER)) < 0 ||
        add_owned(module, "LINE_ENDING", PyBytes_FromString(LINE_ENDING)) < 0 ||
        add_owned(module, "WRAPPER_KEYS", wrappers) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
