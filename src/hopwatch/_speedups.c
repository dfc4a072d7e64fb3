/* hopwatch's hop path in C: the accelerator for hopwatch._hotpath.
 *
 * The pure-Python module hopwatch/_hotpath_py.py has the same behaviour and
 * the same names; hopwatch/_hotpath.py picks this one when it imports (and
 * HOPWATCH_PURE_PYTHON is not set). Read _hotpath_py.py first: it is the
 * reference, and its docstrings say why each step is there. This file is that
 * code made cheap: no Python frame around asgiref's own calls, no objects made
 * per hop but the Hop itself and one small awaitable, attribution answered
 * from a cache keyed by raw facts (code objects, bytecode offsets, types).
 *
 * Everything here runs with the GIL held (CPython 3.11-3.13, not the
 * free-threaded build), which is what makes the list appends and the cache
 * updates below safe without locks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>
#include <unistd.h>
#include <time.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030B0000
#error "hopwatch._speedups needs CPython 3.11 or newer"
#endif

/* ---------------------------------------------------------------- helpers */

static inline long long
now_ns(void)
{
#if defined(__linux__) && defined(CLOCK_MONOTONIC)
    /* time.perf_counter_ns()'s clock on Linux (CPython reads CLOCK_MONOTONIC
     * for it, 3.11 to 3.13), read without the interpreter's wrapper: the same
     * values, some 40 instructions fewer a read and, a hop being four reads,
     * less code to fetch into a cache the request has cooled (the wrapper
     * missed the instruction cache 284 times a request). */
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
        return (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
    }
#endif
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    (void)PyTime_PerfCounterRaw(&t);
    return (long long)t;
#else
    return (long long)_PyTime_GetPerfCounter();
#endif
}

static inline int
lookup_attr(PyObject *obj, PyObject *name, PyObject **result)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, result);
#else
    return _PyObject_LookupAttr(obj, name, result);
#endif
}

/* obj.name for asgiref's adapters, whose attributes are plain instance
 * attributes (set in __init__; the dict exists, functools.update_wrapper
 * filled it): read from the instance dict when the type defines nothing of
 * that name and uses generic attribute access, which is what getattr would
 * find, at a third of the cost; otherwise getattr. 1 found, 0 missing, -1. */
/* "type defines nothing named name" (anywhere in its MRO), remembered per
 * (type, version tag, name). CPython's own answer, _PyType_Lookup, is cached
 * in one process-wide table that a Django request's own lookups keep evicting
 * hopwatch's entries from; each miss walks the MRO's dicts (about 1,300
 * instructions on Python 3.11 for a logging handler). The version tag is
 * unique to a type's state: changing the type or any base clears it (and the
 * valid-tag flag), and tags are never handed out twice, so a remembered answer
 * is only used for the very class state it was found in. `name` must be a
 * string the caller holds for the life of the module (hopwatch's interned
 * names), as its address is part of the key. The GIL guards the table.
 * An entry also remembers where inline_attr last found the name among the
 * type's shared keys (a hint, checked before it is used) or that they lacked
 * it. Two entries a set: a hop reads several (type, name) pairs, and two of
 * them in one slot of a table with one entry a slot evicted each other at
 * every read, in some process layouts (a _PyType_Lookup a read, the hint
 * lost). The set's first entry is the one filled last. */
#define NOATTR_SET_BITS 8
#define NOATTR_SETS (1 << NOATTR_SET_BITS)
#define HINT_NONE (-1)
#define HINT_MISSING (-2)
typedef struct {
    PyTypeObject *type; /* compared only, never dereferenced through the table */
    PyObject *name;
    unsigned int tag;
    Py_ssize_t ix;         /* the name's entry in the shared keys, or a HINT_ value */
    const void *keys;      /* HINT_MISSING: the shared keys that lacked the name, */
    Py_ssize_t nentries;   /* and how many entries they had (compared only) */
} NoAttrEntry;
static NoAttrEntry g_noattr[NOATTR_SETS][2];

static inline int
valid_tag(PyTypeObject *type)
{
#if PY_VERSION_HEX >= 0x030D0000
    /* Python 3.13 no longer sets Py_TPFLAGS_VALID_VERSION_TAG: a tag is valid
     * when it is not 0 (a change to the type or a base sets it to 0). Read
     * through the flag there, every read missed this table and asked
     * _PyType_Lookup. */
    return type->tp_version_tag != 0;
#else
    return type->tp_version_tag != 0 && (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG);
#endif
}

/* For a type that lacks the name: the table's entry for (type, name), where
 * inline_attr keeps its hint, or &g_untagged when the type's state has no
 * valid tag to key one by. NULL: the type defines the name. */
static NoAttrEntry g_untagged;

/* The set of (type, name): every bit of both addresses mixed in (a
 * multiplicative hash, the top bits kept). The names hopwatch reads are
 * strings of one size class, whose addresses share their low bits, and one
 * type is read for several of them. The sum of the two shifted addresses
 * used before left those names few sets: in some process layouts three of an
 * async_to_sync's four pairs evicted each other at every read (three
 * _PyType_Lookups a hop with no type changed, some 1,200 instructions: 2 of
 * 12 callgrind runs of one build and hash seed on 3.11, 2026-12-05). */
static inline size_t
noattr_set(PyTypeObject *type, PyObject *name)
{
    uint64_t h = ((uint64_t)(uintptr_t)type * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)(uintptr_t)name;
    return (size_t)((h * 0x9E3779B97F4A7C15ULL) >> (64 - NOATTR_SET_BITS));
}

static inline NoAttrEntry *
type_lacks(PyTypeObject *type, PyObject *name)
{
    NoAttrEntry *set = g_noattr[noattr_set(type, name)];
    for (int way = 0; way < 2; way++) {
        NoAttrEntry *e = &set[way];
        if (e->type == type && e->name == name && e->tag == type->tp_version_tag
            && valid_tag(type)) {
            return e;
        }
    }
    if (_PyType_Lookup(type, name) != NULL) {
        return NULL;
    }
    if (!valid_tag(type)) {
        return &g_untagged;
    }
    set[1] = set[0];
    NoAttrEntry *e = &set[0];
    e->type = type;
    e->name = name;
    e->tag = type->tp_version_tag;
    e->ix = HINT_NONE;
    return e;
}

/* obj's instance dict if it has one now, without making one (borrowed; NULL:
 * none, or its attributes are still in the object's inline values). Python 3.11
 * and 3.12 keep a new instance's attributes in inline values, which the
 * interpreter's specialized attribute reads depend on; _PyObject_GetDictPtr
 * would turn them into a dict for good, and every later read of the object's
 * attributes by asgiref's own code would take the slow, generic path (an
 * async_to_sync adapter, which asgiref 3.8 makes with no dict: some 3,000
 * instructions a hop). On Python 3.13 _PyObject_GetDictPtr makes a dict that
 * shares the values, which stay valid; instance_attr reads those values first
 * there, and comes here only when they are not. */
static inline PyObject *
existing_dict(PyObject *obj)
{
#if PY_VERSION_HEX < 0x030D0000
    if (Py_TYPE(obj)->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        /* The managed dict's slot, three words before the object (3.11's
         * _PyObject_ManagedDictPointer, 3.12's _PyObject_DictOrValuesPointer). */
        uintptr_t slot = ((uintptr_t *)obj)[-3];
#if PY_VERSION_HEX >= 0x030C0000
        if (slot & 1) { /* tagged: inline values */
            return NULL;
        }
#endif
        return (PyObject *)slot;
    }
#endif
    PyObject **dictptr = _PyObject_GetDictPtr(obj);
    return dictptr != NULL ? *dictptr : NULL;
}

#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
/* CPython's shared keys (a heap type's ht_cached_keys: the attribute names its
 * instances keep in inline values), as pycore_dict.h lays them out in 3.11,
 * 3.12 and 3.13 (with the GIL): the header, the index table, then the
 * entries. A later Python reads attributes through getattr until its layout
 * is checked here. */
typedef struct {
    Py_ssize_t dk_refcnt;
    uint8_t dk_log2_size;
    uint8_t dk_log2_index_bytes;
    uint8_t dk_kind;
    uint32_t dk_version;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
} SharedKeys;
typedef struct {
    PyObject *me_key;
    PyObject *me_value;
} SharedKeyEntry;
#define SHARED_KEYS_SPLIT 2 /* DICT_KEYS_SPLIT */
#if PY_VERSION_HEX >= 0x030D0000
/* Python 3.13's inline values (pycore_dict.h's struct _dictvalues). */
typedef struct {
    uint8_t capacity;
    uint8_t size;
    uint8_t embedded;
    uint8_t valid;
    PyObject *values[1];
} InlineValues;
#endif

/* The keys' entries, after their index table. */
static inline SharedKeyEntry *
keys_entries(SharedKeys *keys)
{
    return (SharedKeyEntry *)(keys->dk_indices + ((size_t)1 << keys->dk_log2_index_bytes));
}

/* The name's index among the keys (as inline_attr says), DKIX_EMPTY (-1) when
 * they lack it, -2 when not known here; the answer remembered in `hint` when
 * there is one. Out of line: a hop's reads find their answer in the hint. */
static Py_NO_INLINE Py_ssize_t
probe_keys(SharedKeys *keys, PyObject *name, NoAttrEntry *hint)
{
    Py_hash_t hash = ((PyASCIIObject *)name)->hash;
    if (hash == -1) {
        hash = PyObject_Hash(name);
        if (hash == -1) {
            PyErr_Clear();
            return -2;
        }
    }
    /* The index table's probe sequence, as dictobject.c walks it. */
    const char *indices = keys->dk_indices;
    SharedKeyEntry *entries = keys_entries(keys);
    int width = keys->dk_log2_index_bytes - keys->dk_log2_size; /* log2 of an index's bytes */
    size_t mask = ((size_t)1 << keys->dk_log2_size) - 1;
    size_t perturb = (size_t)hash, i = (size_t)hash & mask;
    Py_ssize_t ix;
    for (size_t probes = 0;; probes++) {
        if (probes > mask) { /* a table with no empty slot: not one of CPython's */
            return -2;
        }
        switch (width) {
            case 0: ix = ((const int8_t *)indices)[i]; break;
            case 1: ix = ((const int16_t *)indices)[i]; break;
            case 2: ix = ((const int32_t *)indices)[i]; break;
            case 3: ix = (Py_ssize_t)((const int64_t *)indices)[i]; break;
            default: return -2;
        }
        if (ix == -1) { /* DKIX_EMPTY: no such key */
            if (hint != NULL) {
                hint->ix = HINT_MISSING;
                hint->keys = keys;
                hint->nentries = keys->dk_nentries;
            }
            return -1;
        }
        if (ix >= 0) {
            if (ix >= keys->dk_nentries) {
                return -2;
            }
            PyObject *key = entries[ix].me_key;
            if (key == name) {
                if (hint != NULL) {
                    hint->ix = ix;
                }
                return ix;
            }
            if (key != NULL && PyUnicode_CheckExact(key) &&
                ((PyASCIIObject *)key)->hash == hash && PyUnicode_Compare(key, name) == 0) {
                return ix; /* an equal name, not this one: no hint */
            }
        }
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
}

/* obj.name read from the object's inline values, as CPython's own
 * _PyObject_GetInstanceAttribute reads it (obj has no dict on 3.11 and
 * 3.12, its values are valid on 3.13; its type uses generic attribute access
 * and defines nothing of that name): the name's index among the type's shared
 * keys (their hash table, probed as dictobject.c probes it), then that slot.
 * asgiref's AsyncToSync (made without a __dict__) and asyncio's loops keep
 * their attributes there, and on 3.13 SyncToAsync too (its dict shares them). The
 * generic lookup took about 95 instructions a read in a tight loop of hops,
 * and in a request, where Django's own lookups evict hopwatch's entries from
 * CPython's type cache, a miss of several hundred more. Probing the keys
 * took most of the 120 or so instructions this read took (callgrind's
 * per-line counts, 2026-12-03), so `hint` (type_lacks's entry, or NULL)
 * remembers the answer: the entry's index, used only when the keys' entry at
 * that index is this very name (a name is in the keys once, so the probe
 * would find that index), or that the keys lacked the name, used only for
 * the same keys with as many entries (a type's shared keys only ever gain
 * entries, at the end). 1 found, 0 missing, -2 not known here (the caller
 * asks getattr). */
static inline int
inline_attr(PyObject *obj, PyTypeObject *type, PyObject *name, PyObject **result,
            NoAttrEntry *hint)
{
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || !PyUnicode_CheckExact(name)) {
        return -2;
    }
    SharedKeys *keys = (SharedKeys *)((PyHeapTypeObject *)type)->ht_cached_keys;
    if (keys == NULL || keys->dk_kind != SHARED_KEYS_SPLIT) {
        return -2;
    }
#if PY_VERSION_HEX >= 0x030D0000
    /* 3.13: the values right after the object's header (_PyObject_InlineValues,
     * for a type whose instances are just that header), valid until a dict
     * takes them over; a dict made from them shares them and leaves them valid,
     * and CPython reads them first while they are (_PyObject_GenericGetAttrWithDict). */
    if (!(type->tp_flags & Py_TPFLAGS_INLINE_VALUES) || type->tp_basicsize != sizeof(PyObject)) {
        return -2;
    }
    InlineValues *inline_values = (InlineValues *)((char *)obj + sizeof(PyObject));
    if (!inline_values->valid) {
        return -2;
    }
    PyObject **values = inline_values->values;
#elif PY_VERSION_HEX >= 0x030C0000
    uintptr_t slot = ((uintptr_t *)obj)[-3]; /* _PyDictOrValues: tagged values */
    if (!(slot & 1)) {
        return -2;
    }
    PyObject **values = (PyObject **)(slot + 1);
#else
    PyObject **values = ((PyObject ***)obj)[-4]; /* _PyObject_ValuesPointer */
    if (values == NULL) {
        return -2;
    }
#endif
    Py_ssize_t ix = hint != NULL ? hint->ix : HINT_NONE;
    if (ix >= 0) {
        if (ix >= keys->dk_nentries || keys_entries(keys)[ix].me_key != name) {
            ix = probe_keys(keys, name, hint);
        }
    }
    else if (ix != HINT_MISSING || hint->keys != (const void *)keys
             || hint->nentries != keys->dk_nentries) {
        ix = probe_keys(keys, name, hint);
    }
    else {
        ix = -1; /* the same keys lacked it, and have gained nothing since */
    }
    if (ix < 0) {
        *result = NULL;
        return ix == -1 ? 0 : -2;
    }
    *result = Py_XNewRef(values[ix]);
    return *result != NULL;
}
#endif

static inline int
instance_attr(PyObject *obj, PyObject *name, PyObject **result)
{
    PyTypeObject *type = Py_TYPE(obj);
    NoAttrEntry *entry;
    if (type->tp_getattro == PyObject_GenericGetAttr
        && (entry = type_lacks(type, name)) != NULL) {
#if PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000 \
    && !defined(Py_GIL_DISABLED)
        /* 3.13: the inline values first, dict or not, as CPython reads them.
         * A SyncToAsync's dict (functools.update_wrapper made it) shares them,
         * and a lookup in it took about 100 instructions a read; an
         * AsyncToSync has none, and existing_dict would make one for it. */
        if (type->tp_flags & Py_TPFLAGS_INLINE_VALUES) {
            int found =
                inline_attr(obj, type, name, result, entry != &g_untagged ? entry : NULL);
            if (found != -2) {
                return found;
            }
        }
#endif
        PyObject *dict = existing_dict(obj);
        if (dict != NULL && PyDict_CheckExact(dict)) {
            PyObject *value = PyDict_GetItemWithError(dict, name);
            if (value != NULL) {
                *result = Py_NewRef(value);
                return 1;
            }
            *result = NULL;
            return PyErr_Occurred() ? -1 : 0;
        }
#if PY_VERSION_HEX < 0x030D0000
        if (dict == NULL && (type->tp_flags & Py_TPFLAGS_MANAGED_DICT)) {
            int found =
                inline_attr(obj, type, name, result, entry != &g_untagged ? entry : NULL);
            if (found != -2) {
                return found;
            }
        }
#endif
    }
    return lookup_attr(obj, name, result);
}

/* obj.name when it is set to something other than None: 1 (a new reference in
 * *result), 0 (missing or None, *result NULL), -1 error. */
static inline int
instance_value(PyObject *obj, PyObject *name, PyObject **result)
{
    int found = instance_attr(obj, name, result);
    if (found > 0 && *result == Py_None) {
        Py_CLEAR(*result);
        return 0;
    }
    return found;
}

/* An exception in flight is kept aside while hopwatch does its own work. */
typedef struct {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc;
#else
    PyObject *type, *value, *tb;
#endif
} saved_exc;

static inline void
save_exc(saved_exc *s)
{
#if PY_VERSION_HEX >= 0x030C0000
    s->exc = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&s->type, &s->value, &s->tb);
#endif
}

static inline void
restore_exc(saved_exc *s)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(s->exc);
#else
    PyErr_Restore(s->type, s->value, s->tb);
#endif
}

/* An exception kept aside and then not restored: let go of it. */
static inline void
drop_exc(saved_exc *s)
{
#if PY_VERSION_HEX >= 0x030C0000
    Py_CLEAR(s->exc);
#else
    Py_CLEAR(s->type);
    Py_CLEAR(s->value);
    Py_CLEAR(s->tb);
#endif
}

/* The exception set, as one object with its traceback (a new reference; the
 * error indicator cleared), or NULL if none is set. */
static PyObject *
take_exc(void)
{
    saved_exc s;
    save_exc(&s);
#if PY_VERSION_HEX >= 0x030C0000
    return s.exc;
#else
    PyErr_NormalizeException(&s.type, &s.value, &s.tb);
    if (s.value && s.tb) {
        PyException_SetTraceback(s.value, s.tb);
    }
    PyObject *exc = s.value;
    s.value = NULL;
    drop_exc(&s);
    return exc;
#endif
}


/* ---------------------------------------------------------- configuration */

/* ContextVar[Ledger | Hop | None]: the ledger hops are added to, or the
 * async_to_sync hop whose code runs here (its scope is then the ledger). One
 * variable: asgiref passes over every variable of the context on both sides of
 * every crossing (see hopwatch._recorder.current_scope). */
static PyObject *g_current_scope;
/* asgiref's SyncToAsync.thread_sensitive_context and hopwatch's subclass of
 * ThreadSensitiveContext that carries a request's record (see scope_value). */
static PyObject *g_tsc_var, *g_request_context_type, *s_record;
/* Where a RequestContext keeps its record (its "record" slot), read without an
 * attribute lookup at every crossing; -1: read as an attribute. */
static Py_ssize_t g_record_offset = -1;
static PyObject *g_resolve;          /* resolve(adapter, target, frame) -> (cause, mode) */
static PyObject *g_classify_code;    /* classify_code(code) -> 0 user, 1 library, 2 loop */
static PyObject *g_unscoped;         /* Ledger */
static PyObject *g_late;             /* Ledger */
static PyObject *g_report;           /* report(where, exc) */
/* threading.get_ident as the recorder reads it, when it is not the builtin (gevent's
 * or eventlet's monkey-patching: a greenlet's id); NULL: the OS thread's, read in C. */
static PyObject *g_get_ident = NULL;
static PyObject *g_thread_hook;      /* hook(hop, handler, args, kwargs) or None */
static PyObject *g_cancelled;        /* asyncio.CancelledError */
static PyObject *g_get_running_loop; /* asyncio.events._get_running_loop */
static PyObject *g_threadlocal;      /* SyncToAsync.threadlocal */
static PyObject *g_adopt;            /* adopt(cls) -> True, False or None (hopwatch._patch._adopt) */
static PyObject *g_layer;            /* layer(adapter, frame) -> bool (hopwatch._patch._layer) */
static int g_active = 0;
static int g_thread_hooks = 0;


static PyObject *s_sync_to_async, *s_async_to_sync, *s_ok, *s_error, *s_cancelled;
static PyObject *s_func, *s_awaitable, *s_thread_sensitive, *s_tag, *s_dict, *s_thread_handler;
static PyObject *s_force_new_loop, *s_main_event_loop, *s_main_event_loop_pid, *s_executor;
static PyObject *s_thread_id; /* asyncio loops' `_thread_id` */
static PyObject *s_call;      /* "__call__" */
static PyObject *s_throw, *s_close;
static PyObject *g_partial_type;
static PyObject *g_overflow_cause;  /* the Cause that absorbs causes past the limit */


static void
report_error(const char *where)
{
    /* Called with an exception set: hand it to hopwatch._errors, never raise. */
    PyObject *exc = take_exc();
    if (g_report && exc) {
        PyObject *r = PyObject_CallFunction(g_report, "sO", where, exc);
        Py_XDECREF(r);
    }
    Py_XDECREF(exc);
    PyErr_Clear();
}

/* -------------------------------------------------------------------- Hop */

typedef struct {
    PyObject_HEAD
    PyObject *direction;
    PyObject *cause;
    PyObject *thread_sensitive;
    PyObject *parent;
    PyObject *scope;
    PyObject *outcome;
    PyObject *expected_loop;
    long long called_ns;
    long long started_ns;
    long long ended_ns;
    long long resumed_ns;
    /* Of the crossings made in this one's run (in its scope or one inside it: a
     * request served there; accounted before it): the time they spent crossing,
     * and the time their code ran. */
    long long inner_ns;
    long long inner_work_ns;
    unsigned long long thread_id;
    Py_ssize_t adapter_id; /* identity of the adapter while the call lasts; never a reference */
    int depth;
    char new_loop;
    char new_thread; /* async_to_sync: its new loop ran in a thread started for it */
    char own_executor; /* sync_to_async, not thread-sensitive: the caller gave an executor */
} HopObject;

static PyTypeObject HopType;
static PyTypeObject LedgerCoreType;

/* glibc: the initial-exec model, a load at a fixed offset from the thread
 * pointer, where the default for a module loaded by dlopen calls
 * __tls_get_addr on every access (some 15 calls in a request of 15 hops,
 * about 350 cache misses a request in callgrind's simulation) and allocates
 * the block in each new thread. The 33 bytes come from the static TLS that glibc keeps
 * spare for modules loaded later; were it used up, the import would fail and
 * hopwatch would run its pure-Python hop path, which its system check
 * hopwatch.W006 reports. */
#if defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define HOPWATCH_TLS _Thread_local __attribute__((tls_model("initial-exec")))
#else
#define HOPWATCH_TLS _Thread_local
#endif

/* Per-thread hand-over, no context variable (each one a context holds costs
 * every later crossing a pass of asgiref's _restore_context, twice on 3.13):
 * tl_pending is the sync_to_async hop whose asgiref coroutine is taking its
 * first step in this thread, which is when asgiref binds thread_handler
 * (Patch_descr_get hands it to the bound handler the worker will call);
 * tl_running is the sync_to_async hop whose code this (sync) thread is
 * running, the parent of an async_to_sync made here. Both borrowed: the
 * awaitable and the bound handler hold the hop while they are set. */
static HOPWATCH_TLS HopObject *tl_pending = NULL;
/* A SyncToAsync subclass with a thread_handler of its own (channels'
 * DatabaseSyncToAsync) has asgiref bind that one in the caller's thread, and
 * calls SyncToAsync's through super() in the worker thread, where no hop is
 * pending. The first time s2a_start meets such a class (before asgiref's first
 * step), g_adopt (hopwatch._patch._adopt) puts a Patch (P_THREAD_HANDLER)
 * around the class's own function, in the class of the MRO that defines it:
 * asgiref's binding then takes the hop, and the subclass's super() call binds
 * SyncToAsync's Patch with no hop pending, a plain method. g_plain_s2a: an
 * adapter class known to bind a Patch (SyncToAsync, or one adopted), borrowed,
 * only ever compared; g_declined: the last thread_handler g_adopt left alone
 * (not a plain function, or other code's over hopwatch's), held, so it is not
 * asked again while the class keeps it. */
static PyTypeObject *g_plain_s2a = NULL;
static PyObject *g_declined = NULL;
static HOPWATCH_TLS HopObject *tl_running = NULL;
/* The loop tl_running's caller awaits (thread_handler's first argument), the
 * one asgiref's thread_handler has just stored in SyncToAsync.threadlocal. */
static HOPWATCH_TLS PyObject *tl_loop = NULL;
/* The async_to_sync hop whose AsyncToSync.__call__ runs in this thread (borrowed:
 * a2s_call holds it): __call__ makes main_wrap's coroutine here, before handing
 * it to the loop, so main_wrap_call finds its hop without a context lookup. */
static HOPWATCH_TLS HopObject *tl_a2s = NULL;
/* Set once a new loop of an async_to_sync ran in this thread (cold path only). */
static HOPWATCH_TLS char tl_loop_thread = 0;
/* Where main_wrap takes the awaitable it runs (its position in the call,
 * counting self; asgiref 3.9 and later), or -1 (3.8, where main_wrap makes it
 * itself from self.awaitable). With it, the async_to_sync hop is the value of
 * the scope variable only inside that awaitable, on the loop: it is never in
 * the contexts asgiref copies between the two sides, each of whose variables
 * costs a pass of _restore_context on each side. Without it, it is set in the
 * caller around the whole call. g_awaiting: hopwatch._hotpath_py._awaiting, an
 * ``async def`` that awaits what is not a coroutine, as main_wrap's await would. */
static Py_ssize_t g_awaitable_index = -1;
static PyObject *g_awaiting = NULL;
/* Whether asgiref keeps the loop an async_to_sync schedules onto on the adapter
 * (`self.main_event_loop`, before 3.12); later, nothing sets that attribute and
 * expected_loop does not read it (a generic attribute read that misses, some 250
 * instructions a hop). */
static int g_loop_on_adapter = 1;

#ifndef Py_GIL_DISABLED
/* Hops freed and kept for reuse (the GIL guards the list). */
#define FREE_HOPS 16
static HopObject *g_free_hops[FREE_HOPS];
static int g_free_hops_n;
#endif

static HopObject *
hop_make(PyObject *direction, PyObject *cause, PyObject *thread_sensitive, PyObject *parent,
         PyObject *scope)
{
    /* Not a GC object (see HopType): allocated outside the collector's count,
     * from the free list when it holds one (see Hop_dealloc). */
    HopObject *hop;
#ifndef Py_GIL_DISABLED
    if (g_free_hops_n > 0) {
        hop = g_free_hops[--g_free_hops_n];
        (void)PyObject_Init((PyObject *)hop, &HopType);
    }
    else
#endif
    {
        hop = PyObject_New(HopObject, &HopType);
        if (hop == NULL) {
            return NULL;
        }
    }
    hop->direction = Py_NewRef(direction);
    hop->cause = Py_NewRef(cause);
    hop->thread_sensitive = Py_NewRef(thread_sensitive);
    hop->parent = Py_NewRef(parent);
    hop->scope = Py_NewRef(scope);
    hop->outcome = Py_NewRef(s_ok);
    hop->expected_loop = Py_NewRef(Py_None);
    hop->called_ns = hop->started_ns = hop->ended_ns = hop->resumed_ns = 0;
    hop->inner_ns = hop->inner_work_ns = 0;
    hop->thread_id = 0;
    hop->adapter_id = 0;
    hop->depth = (parent != Py_None && Py_IS_TYPE(parent, &HopType))
                     ? ((HopObject *)parent)->depth + 1
                     : 1;
    hop->new_loop = 0;
    hop->new_thread = 0;
    hop->own_executor = 0;
    return hop;
}

static PyObject *
Hop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    static char *kwlist[] = {"direction", "cause", "thread_sensitive", "parent", "scope",
                             "called_ns", NULL};
    PyObject *direction, *cause, *thread_sensitive, *parent, *scope;
    long long called_ns = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO|L", kwlist, &direction, &cause,
                                     &thread_sensitive, &parent, &scope, &called_ns)) {
        return NULL;
    }
    /* A hop is no GC object: what it references must not lead back to it. */
    if (parent != Py_None && !Py_IS_TYPE(parent, &HopType)) {
        PyErr_SetString(PyExc_TypeError, "Hop(): parent must be a Hop or None");
        return NULL;
    }
    if (scope != Py_None && !PyObject_TypeCheck(scope, &LedgerCoreType)) {
        PyErr_SetString(PyExc_TypeError, "Hop(): scope must be a Ledger or None");
        return NULL;
    }
    HopObject *hop = hop_make(direction, cause, thread_sensitive, parent, scope);
    if (hop) {
        hop->called_ns = called_ns;
    }
    return (PyObject *)hop;
}

static void
Hop_dealloc(HopObject *self)
{
    Py_CLEAR(self->direction);
    Py_CLEAR(self->thread_sensitive);
    Py_CLEAR(self->outcome);
    Py_CLEAR(self->cause);
    Py_CLEAR(self->parent);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->expected_loop);
#ifndef Py_GIL_DISABLED
    if (g_free_hops_n < FREE_HOPS) {
        /* Kept for the next hop, holding nothing (its fields cleared above):
         * an allocation and a free less a hop, as CPython keeps its own.
         * (HopType has no subclasses: every hop is the list's size.) */
        g_free_hops[g_free_hops_n++] = self;
        return;
    }
#endif
    PyObject_Free(self);
}

static inline long long
clamp0(long long v)
{
    return v > 0 ? v : 0;
}

/* When the code's run ended, as far as the crossing goes: ended_ns, or
 * resumed_ns when the caller resumed first (cancelled, or timed out, while its
 * code still ran on the other side; hopwatch._hotpath_py.Hop.end_ns). */
static inline long long
hop_end(HopObject *h)
{
    long long ended = h->ended_ns, resumed = h->resumed_ns;
    return resumed && (!ended || ended > resumed) ? resumed : ended;
}

static PyObject *
Hop_end_ns(HopObject *h, void *c)
{
    (void)c;
    return PyLong_FromLongLong(hop_end(h));
}

static PyObject *
Hop_wait_ns(HopObject *h, void *c)
{
    (void)c;
    if (!h->started_ns) {
        return PyLong_FromLongLong(clamp0(h->resumed_ns - h->called_ns));
    }
    return PyLong_FromLongLong(clamp0(h->started_ns - h->called_ns));
}

static PyObject *
Hop_run_ns(HopObject *h, void *c)
{
    (void)c;
    if (!h->started_ns) {
        return PyLong_FromLong(0);
    }
    return PyLong_FromLongLong(clamp0(hop_end(h) - h->started_ns));
}

static PyObject *
Hop_resume_ns(HopObject *h, void *c)
{
    (void)c;
    if (!h->started_ns) {
        return PyLong_FromLong(0);
    }
    return PyLong_FromLongLong(clamp0(h->resumed_ns - hop_end(h)));
}

static PyObject *
Hop_wall_ns(HopObject *h, void *c)
{
    (void)c;
    return PyLong_FromLongLong(clamp0(h->resumed_ns - h->called_ns));
}

static PyObject *
Hop_overhead_ns(HopObject *h, void *c)
{
    (void)c;
    long long wall = clamp0(h->resumed_ns - h->called_ns);
    if (!h->started_ns) {
        return PyLong_FromLongLong(wall);
    }
    long long run = clamp0(hop_end(h) - h->started_ns);
    return PyLong_FromLongLong(clamp0(wall - run));
}

/* The time the crossings made in its run spent crossing, as its work leaves it
 * out: crossings that overlapped (gathered onto one thread, each queued behind
 * the others) each count their own wait, which can add up to more than the run
 * left beside their code; bounded by that. */
static inline long long
hop_inner(HopObject *h, long long run)
{
    long long inner = h->inner_ns, room = clamp0(run - h->inner_work_ns);
    return inner > room ? room : inner;
}

static PyObject *
Hop_work_ns(HopObject *h, void *c)
{
    (void)c;
    long long run = h->started_ns ? clamp0(hop_end(h) - h->started_ns) : 0;
    return PyLong_FromLongLong(run - hop_inner(h, run));
}

static PyObject *
Hop_repr(HopObject *h)
{
    PyObject *describe = PyObject_CallMethod(h->cause, "describe", NULL);
    if (describe == NULL) {
        return NULL;
    }
    long long wall_us = clamp0(h->resumed_ns - h->called_ns) / 1000;
    PyObject *r = PyUnicode_FromFormat("<Hop %U %U depth=%d wall=%lld.%03lldms %U>", h->direction,
                                       describe, h->depth, wall_us / 1000, wall_us % 1000,
                                       h->outcome);
    Py_DECREF(describe);
    return r;
}

static PyMemberDef Hop_members[] = {
    {"direction", T_OBJECT, offsetof(HopObject, direction), READONLY, NULL},
    {"cause", T_OBJECT, offsetof(HopObject, cause), READONLY, NULL},
    {"thread_sensitive", T_OBJECT, offsetof(HopObject, thread_sensitive), READONLY, NULL},
    {"parent", T_OBJECT, offsetof(HopObject, parent), READONLY, NULL},
    {"scope", T_OBJECT, offsetof(HopObject, scope), READONLY, NULL},
    {"outcome", T_OBJECT, offsetof(HopObject, outcome), READONLY, NULL},
    {"expected_loop", T_OBJECT, offsetof(HopObject, expected_loop), READONLY, NULL},
    {"called_ns", T_LONGLONG, offsetof(HopObject, called_ns), 0, NULL},
    {"started_ns", T_LONGLONG, offsetof(HopObject, started_ns), 0, NULL},
    {"ended_ns", T_LONGLONG, offsetof(HopObject, ended_ns), 0, NULL},
    {"resumed_ns", T_LONGLONG, offsetof(HopObject, resumed_ns), 0, NULL},
    {"inner_ns", T_LONGLONG, offsetof(HopObject, inner_ns), 0,
     "Of the crossings made in its run: the time they spent crossing."},
    {"inner_work_ns", T_LONGLONG, offsetof(HopObject, inner_work_ns), 0,
     "Of the crossings made in its run: the time their code ran."},
    {"thread_id", T_ULONGLONG, offsetof(HopObject, thread_id), 0, NULL},
    {"adapter_id", T_PYSSIZET, offsetof(HopObject, adapter_id), 0, NULL},
    {"depth", T_INT, offsetof(HopObject, depth), 0, NULL},
    {"new_loop", T_BOOL, offsetof(HopObject, new_loop), 0, NULL},
    {"new_thread", T_BOOL, offsetof(HopObject, new_thread), 0,
     "An async_to_sync whose new loop ran in a thread started for it."},
    {"own_executor", T_BOOL, offsetof(HopObject, own_executor), 0,
     "A sync_to_async that is not thread-sensitive ran on an executor its caller gave."},
    {NULL},
};

static PyGetSetDef Hop_getset[] = {
    {"end_ns", (getter)Hop_end_ns, NULL,
     "When the code's run ended, as far as the crossing goes: ended_ns, or resumed_ns when"
     " the caller resumed first.",
     NULL},
    {"wait_ns", (getter)Hop_wait_ns, NULL,
     "Queued: from the call until the code started running on the other side.", NULL},
    {"run_ns", (getter)Hop_run_ns, NULL, "Running: the code's own time on the other side.", NULL},
    {"resume_ns", (getter)Hop_resume_ns, NULL, "From the code finishing until the caller resumed.",
     NULL},
    {"wall_ns", (getter)Hop_wall_ns, NULL, "The whole crossing as the caller saw it.", NULL},
    {"overhead_ns", (getter)Hop_overhead_ns, NULL,
     "The crossing's own cost: wait plus hand-off back (wall minus run).", NULL},
    {"work_ns", (getter)Hop_work_ns, NULL,
     "The code's time in its run: the run less what the crossings made in it spent crossing.",
     NULL},
    {NULL},
};

static PyTypeObject HopType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.Hop",
    .tp_basicsize = sizeof(HopObject),
    /* No GC object: a request's hops live with its record, which Django's
     * ASGI handler leaves in a reference cycle until a collection; allocated
     * by the collector, each would count towards the next young collection
     * (the count is of allocations, tracked or not), fifteen a request on
     * the example site. A hop can be in no cycle: its object fields are
     * read-only from Python, its parent is an older hop, its scope a ledger
     * that holds finished hops only (finish_hop_impl drops the link first),
     * its cause holds strings; the loop it expects is let go when the call
     * returns. The holders that can be in cycles (awaitables, handlers) are
     * GC objects and visit it. */
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One sync/async crossing (see hopwatch._hotpath_py.Hop).",
    .tp_new = Hop_new,
    .tp_dealloc = (destructor)Hop_dealloc,
    .tp_members = Hop_members,
    .tp_getset = Hop_getset,
    .tp_repr = (reprfunc)Hop_repr,
};

/* -------------------------------------------------------------- CauseStats */

typedef struct {
    PyObject_HEAD
    PyObject *direction;
    long long count, wall_ns, wait_ns, run_ns, resume_ns, overhead_ns;
} CauseStatsObject;

static PyTypeObject CauseStatsType;

static CauseStatsObject *
stats_make(PyObject *direction)
{
    CauseStatsObject *st = PyObject_New(CauseStatsObject, &CauseStatsType);
    if (st == NULL) {
        return NULL;
    }
    st->direction = Py_NewRef(direction);
    st->count = st->wall_ns = st->wait_ns = st->run_ns = st->resume_ns = 0;
    st->overhead_ns = 0;
    return st;
}

static PyObject *
CauseStats_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    static char *kwlist[] = {"direction", NULL};
    PyObject *direction;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &direction)) {
        return NULL;
    }
    return (PyObject *)stats_make(direction);
}

static void
CauseStats_dealloc(CauseStatsObject *st)
{
    Py_XDECREF(st->direction);
    PyObject_Free(st);
}

static PyMemberDef CauseStats_members[] = {
    {"direction", T_OBJECT, offsetof(CauseStatsObject, direction), 0, NULL},
    {"count", T_LONGLONG, offsetof(CauseStatsObject, count), 0, NULL},
    {"wall_ns", T_LONGLONG, offsetof(CauseStatsObject, wall_ns), 0, NULL},
    {"wait_ns", T_LONGLONG, offsetof(CauseStatsObject, wait_ns), 0, NULL},
    {"run_ns", T_LONGLONG, offsetof(CauseStatsObject, run_ns), 0, NULL},
    {"resume_ns", T_LONGLONG, offsetof(CauseStatsObject, resume_ns), 0, NULL},
    {"overhead_ns", T_LONGLONG, offsetof(CauseStatsObject, overhead_ns), 0, NULL},
    {NULL},
};

static PyTypeObject CauseStatsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.CauseStats",
    .tp_basicsize = sizeof(CauseStatsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Aggregate of one cause's hops within a ledger (every hop, nested ones too).",
    .tp_new = CauseStats_new,
    .tp_dealloc = (destructor)CauseStats_dealloc,
    .tp_members = CauseStats_members,
};

/* ------------------------------------------------------------- LedgerCore */

/* One cause of a ledger's hops and their sums. A ledger keeps its causes in an
 * array, in the order first seen, found through an open-addressed index by the
 * cause's and the direction's addresses: causes are interned (one object per
 * cause in the process: hopwatch._recorder.intern_cause) and the directions
 * are the module's two interned strings, so no key is hashed or made per hop,
 * and a request has no dict of its causes (a dict keyed by (cause, direction)
 * tuples cost some 700 instructions a hop: the tuple's hash twice, the lookup,
 * the insertion and the dict's growth). */
typedef struct {
    PyObject *cause, *direction; /* held */
    CauseStatsObject *stats;     /* held */
} CauseSlot;

/* The first allocation's slots: 16 causes and an index of 32 (512 bytes, the
 * largest block of Python's small-object allocator); doubled when full. */
#define CAUSES_FIRST 16

/* A ledger's exact account of hops (see hopwatch._hotpath_py.LedgerCore for
 * the reference): each finished hop is accounted at once, in C, under the GIL,
 * into counts and sums, per cause, and the kept hops (up to detail_limit).
 * hopwatch._recorder.Ledger subclasses it with the reading methods. */
typedef struct {
    PyObject_HEAD
    PyObject *parent;
    PyObject *outer_hop;  /* the hop whose code ran where this ledger was entered */
    /* Its causes, in the order first seen: see CauseSlot. Python reads them
     * as the `causes` dict, made on each read. */
    CauseSlot *cause_slots; /* cause_cap slots, then the index (2 * cause_cap) */
    Py_ssize_t n_causes, cause_cap;
    /* The last cause accounted, and its stats (borrowed from its slot): the
     * hops of a loop or a handler's repeated crossings find it without the
     * index. Never the overflow cause's stats under another cause. */
    PyObject *last_cause, *last_direction;
    CauseStatsObject *last_stats;
    PyObject *details;    /* [Hop], at most detail_limit */
    /* The threads that ran its hops: the first 8 distinct ids here (a request
     * has one or two), the rest in a set made for them; read as one set through
     * the thread_ids getter. (No set per request: one object less towards the
     * next collection, and no hashing.) */
    unsigned long long tids[8];
    int n_tids;
    PyObject *more_tids; /* {thread id} past the first 8, or NULL */
    /* Threads started for a new loop whose id an earlier thread of its hops had
     * (one that ended): distinct threads the ids do not tell apart. */
    long long thread_reuses;
    PyObject *pinned_by;  /* {cause: ns}, made on the first pinned time; see pinned_flush */
    long long count, sync_to_async, async_to_sync, wall_ns, wait_ns, run_ns;
    long long overhead_ns, work_ns, new_loops, max_depth, pinned_ns, detail_dropped;
    long long threadless; /* hops with no thread recorded (never started) */
    Py_ssize_t detail_limit, cause_limit;
    /* Pinned time not yet added into pinned_by: (cause, held) -> ns. */
    PyObject *pin_cause;
    long long pin_ns;
    char closed;
} LedgerCoreObject;

static PyTypeObject LedgerCoreType;

static PyObject *
LedgerCore_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    LedgerCoreObject *self = (LedgerCoreObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->parent = Py_NewRef(Py_None);
    self->outer_hop = Py_NewRef(Py_None);
    self->details = PyList_New(0);
    /* (pinned_by waits for pinned time: most requests have none, and an object
     * less per request is one less towards the next collection. The causes'
     * slots wait for the first hop.) */
    if (!self->details) {
        Py_DECREF(self);
        return NULL;
    }
    self->detail_limit = 1000;
    self->cause_limit = 256;
    return (PyObject *)self;
}

static int
LedgerCore_traverse(LedgerCoreObject *self, visitproc visit, void *arg)
{
    /* Not Py_TYPE(self): LedgerCore is a static type, and its Python subclasses
     * (Ledger, RequestRecord) are heap types whose own traversal visits the class
     * before calling this one; visiting it here too counted one reference twice,
     * which a debug CPython's collector aborts on ("refcount is too small"). */
    Py_VISIT(self->parent);
    Py_VISIT(self->outer_hop);
    for (Py_ssize_t i = 0; i < self->n_causes; i++) {
        Py_VISIT(self->cause_slots[i].cause);
    }
    Py_VISIT(self->details);
    Py_VISIT(self->more_tids);
    Py_VISIT(self->pinned_by);
    Py_VISIT(self->pin_cause);
    return 0;
}

static int
LedgerCore_clear(LedgerCoreObject *self)
{
    Py_CLEAR(self->parent);
    Py_CLEAR(self->outer_hop);
    CauseSlot *slots = self->cause_slots;
    Py_ssize_t n = self->n_causes;
    self->cause_slots = NULL;
    self->n_causes = self->cause_cap = 0;
    self->last_cause = self->last_direction = NULL;
    self->last_stats = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(slots[i].cause);
        Py_DECREF(slots[i].direction);
        Py_DECREF(slots[i].stats);
    }
    PyMem_Free(slots);
    Py_CLEAR(self->details);
    Py_CLEAR(self->more_tids);
    Py_CLEAR(self->pinned_by);
    Py_CLEAR(self->pin_cause);
    return 0;
}

static void
LedgerCore_dealloc(LedgerCoreObject *self)
{
    PyObject_GC_UnTrack(self);
    LedgerCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
LedgerCore_close(LedgerCoreObject *self, PyObject *unused)
{
    (void)unused;
    /* Atomic under the GIL with respect to the accounting, which checks the
     * flag and accounts without releasing it. */
    self->closed = 1;
    Py_RETURN_NONE;
}

/* The index follows the slots in one block: 2 * cause_cap entries, -1 empty. */
static inline int32_t *
cause_index(LedgerCoreObject *l)
{
    return (int32_t *)(l->cause_slots + l->cause_cap);
}

static inline size_t
cause_hash(PyObject *cause, PyObject *direction)
{
    uintptr_t c = (uintptr_t)cause, d = (uintptr_t)direction;
    return (size_t)((c >> 4) ^ (c >> 11) ^ (d >> 4));
}

/* The stats of (cause, direction) in the ledger (borrowed), or NULL. */
static inline CauseStatsObject *
cause_find(LedgerCoreObject *l, PyObject *cause, PyObject *direction)
{
    if (l->cause_cap == 0) {
        return NULL;
    }
    size_t mask = (size_t)(2 * l->cause_cap - 1);
    int32_t *index = cause_index(l);
    for (size_t i = cause_hash(cause, direction) & mask;; i = (i + 1) & mask) {
        int32_t k = index[i];
        if (k < 0) {
            return NULL;
        }
        CauseSlot *slot = &l->cause_slots[k];
        if (slot->cause == cause && slot->direction == direction) {
            return slot->stats;
        }
    }
}

/* Room for one more cause: the first block, or one of twice the size with
 * the slots moved and the index rebuilt. 0 or -1. */
static int
cause_room(LedgerCoreObject *l)
{
    if (l->n_causes < l->cause_cap) {
        return 0;
    }
    Py_ssize_t cap = l->cause_cap ? 2 * l->cause_cap : CAUSES_FIRST;
    if (cap > (PY_SSIZE_T_MAX / 4) / (Py_ssize_t)(sizeof(CauseSlot) + 2 * sizeof(int32_t)) ||
        cap > INT32_MAX / 2) {
        PyErr_NoMemory();
        return -1;
    }
    CauseSlot *slots =
        PyMem_Realloc(l->cause_slots, (size_t)cap * (sizeof(CauseSlot) + 2 * sizeof(int32_t)));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    l->cause_slots = slots;
    l->cause_cap = cap;
    int32_t *index = cause_index(l);
    memset(index, 0xff, (size_t)(2 * cap) * sizeof(int32_t)); /* every entry -1 */
    size_t mask = (size_t)(2 * cap - 1);
    for (Py_ssize_t k = 0; k < l->n_causes; k++) {
        size_t i = cause_hash(slots[k].cause, slots[k].direction) & mask;
        while (index[i] >= 0) {
            i = (i + 1) & mask;
        }
        index[i] = (int32_t)k;
    }
    return 0;
}

/* A new cause's stats (borrowed: the slot holds them), or NULL on error. */
static CauseStatsObject *stats_make(PyObject *direction);

static CauseStatsObject *
cause_add(LedgerCoreObject *l, PyObject *cause, PyObject *direction)
{
    if (cause_room(l) < 0) {
        return NULL;
    }
    CauseStatsObject *stats = stats_make(direction);
    if (stats == NULL) {
        return NULL;
    }
    Py_ssize_t k = l->n_causes++;
    CauseSlot *slot = &l->cause_slots[k];
    slot->cause = Py_NewRef(cause);
    slot->direction = Py_NewRef(direction);
    slot->stats = stats;
    size_t mask = (size_t)(2 * l->cause_cap - 1);
    int32_t *index = cause_index(l);
    size_t i = cause_hash(cause, direction) & mask;
    while (index[i] >= 0) {
        i = (i + 1) & mask;
    }
    index[i] = (int32_t)k;
    return stats;
}

static PyObject *cause_key(PyObject *cause, PyObject *direction);

static PyObject *
LedgerCore_get_causes(LedgerCoreObject *self, void *closure)
{
    (void)closure;
    /* {(cause, direction): CauseStats}, in the order first seen: a dict of the
     * reader's own (the stats are the ledger's: they go on adding up). */
    PyObject *causes = PyDict_New();
    for (Py_ssize_t i = 0; causes != NULL && i < self->n_causes; i++) {
        CauseSlot *slot = &self->cause_slots[i];
        PyObject *key = cause_key(slot->cause, slot->direction);
        if (key == NULL || PyDict_SetItem(causes, key, (PyObject *)slot->stats) < 0) {
            Py_CLEAR(causes);
        }
        Py_XDECREF(key);
    }
    return causes;
}

static PyObject *
LedgerCore_get_detail_limit(LedgerCoreObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->detail_limit);
}

static int
LedgerCore_set_detail_limit(LedgerCoreObject *self, PyObject *value, void *closure)
{
    (void)closure;
    /* At most this many hops kept, whenever it is set: a lower limit drops
     * the kept hops beyond it (counted in detail_dropped). */
    Py_ssize_t limit = value ? PyLong_AsSsize_t(value) : -1;
    if (limit < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "detail_limit must be a whole number >= 0");
        }
        return -1;
    }
    self->detail_limit = limit;
    Py_ssize_t kept = self->details ? PyList_GET_SIZE(self->details) : 0;
    if (kept > limit) {
        if (PyList_SetSlice(self->details, limit, kept, NULL) < 0) {
            return -1;
        }
        self->detail_dropped += kept - limit;
    }
    return 0;
}

static int
pinned_flush(LedgerCoreObject *l)
{
    /* Add the pending pinned time into the dict (a run of async_to_sync
     * crossings pinned by one cause, the usual case, costs one update). */
    PyObject *by = l->pin_cause;
    if (by == NULL) {
        return 0;
    }
    if (l->pinned_by == NULL && (l->pinned_by = PyDict_New()) == NULL) {
        return -1;
    }
    PyObject *old = PyDict_GetItemWithError(l->pinned_by, by);
    if (old == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (old == NULL && PyDict_GET_SIZE(l->pinned_by) >= l->cause_limit && g_overflow_cause) {
        /* Bounded like causes: past the limit, into the overflow cause. */
        by = g_overflow_cause;
        old = PyDict_GetItemWithError(l->pinned_by, by);
        if (old == NULL && PyErr_Occurred()) {
            return -1;
        }
    }
    long long before = old ? PyLong_AsLongLong(old) : 0;
    if (before == -1 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *sum = PyLong_FromLongLong(before + l->pin_ns);
    if (sum == NULL || PyDict_SetItem(l->pinned_by, by, sum) < 0) {
        Py_XDECREF(sum);
        return -1;
    }
    Py_DECREF(sum);
    Py_CLEAR(l->pin_cause);
    l->pin_ns = 0;
    return 0;
}

static PyObject *
LedgerCore_get_pinned_by(LedgerCoreObject *self, void *closure)
{
    (void)closure;
    if (pinned_flush(self) < 0) {
        return NULL;
    }
    /* None pinned: an empty dict of the reader's own (the ledger keeps none). */
    return self->pinned_by ? Py_NewRef(self->pinned_by) : PyDict_New();
}

static PyObject *
LedgerCore_get_thread_ids(LedgerCoreObject *self, void *closure)
{
    (void)closure;
    /* A set of the reader's own: the ids of the threads that ran its hops. */
    PyObject *ids = PySet_New(self->more_tids);
    for (int i = 0; ids != NULL && i < self->n_tids; i++) {
        PyObject *tid = PyLong_FromUnsignedLongLong(self->tids[i]);
        if (tid == NULL || PySet_Add(ids, tid) < 0) {
            Py_XDECREF(tid);
            Py_CLEAR(ids);
            break;
        }
        Py_DECREF(tid);
    }
    return ids;
}

static PyObject *
LedgerCore_get_threads_seen(LedgerCoreObject *self, void *closure)
{
    (void)closure;
    Py_ssize_t more = self->more_tids ? PySet_GET_SIZE(self->more_tids) : 0;
    return PyLong_FromSsize_t(self->n_tids + more);
}

static PyGetSetDef LedgerCore_getset[] = {
    {"causes", (getter)LedgerCore_get_causes, NULL,
     "{(cause, direction): CauseStats}, in the order first seen (a new dict on each read).",
     NULL},
    {"thread_ids", (getter)LedgerCore_get_thread_ids, NULL,
     "{thread id}: the threads that ran its hops (a new set on each read).", NULL},
    {"threads_seen", (getter)LedgerCore_get_threads_seen, NULL,
     "How many distinct threads ran its hops (len(thread_ids), without a set).", NULL},
    {"pinned_by", (getter)LedgerCore_get_pinned_by, NULL,
     "{cause: ns}: the time each sync_to_async cause held a worker thread while async work ran.",
     NULL},
    {"detail_limit", (getter)LedgerCore_get_detail_limit, (setter)LedgerCore_set_detail_limit,
     "At most this many hops are kept one by one (the rest are counted).", NULL},
    {NULL},
};

/* The causes ranked the way the line lists them: summed wall time, largest
 * first; ties: more hops first, then by site, then first seen. */
typedef struct {
    PyObject *cause, *stats, *site; /* borrowed, but site: held */
    long long wall, count;
    Py_ssize_t index;
} RankEntry;

static int
rank_cmp_totals(const void *pa, const void *pb)
{
    const RankEntry *a = pa, *b = pb;
    if (a->wall != b->wall) {
        return a->wall > b->wall ? -1 : 1;
    }
    if (a->count != b->count) {
        return a->count > b->count ? -1 : 1;
    }
    return a->index < b->index ? -1 : (a->index > b->index);
}

static int
rank_cmp(const void *pa, const void *pb)
{
    const RankEntry *a = pa, *b = pb;
    if (a->wall != b->wall) {
        return a->wall > b->wall ? -1 : 1;
    }
    if (a->count != b->count) {
        return a->count > b->count ? -1 : 1;
    }
    if (a->site != b->site && a->site && b->site && PyUnicode_Check(a->site) &&
        PyUnicode_Check(b->site)) {
        int c = PyUnicode_Compare(a->site, b->site);
        if (c != 0) {
            return c;
        }
    }
    return a->index < b->index ? -1 : (a->index > b->index);
}

/* What a caller gives ledger_ranked to rank a usual request's causes in,
 * without an allocation (for 15 causes, 720 bytes: the system allocator's). */
#define RANK_STACK 32

static void
ranked_free(RankEntry *entries, Py_ssize_t n, RankEntry *stack)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(entries[i].site);
    }
    if (entries != stack) {
        PyMem_Free(entries);
    }
}

static PyObject *s_site, *s_kind, *s_call_site, *s_direction, *s_count, *s_ms, *s_overhead_ms;
static PyObject *s_view; /* the view's kind: its site is always on the line (see last_shown) */

/* The entry's cause's site (read once, held by the entry), or NULL on error. */
static PyObject *
entry_site(RankEntry *e)
{
    if (e->site == NULL) {
        e->site = PyObject_GetAttr(e->cause, s_site);
    }
    return e->site;
}

static RankEntry *
ledger_ranked(LedgerCoreObject *l, Py_ssize_t *n, RankEntry *stack)
{
    /* In `stack` (RANK_STACK entries) when they fit; free with ranked_free. */
    Py_ssize_t size = l->n_causes, i = 0;
    RankEntry *entries = size <= RANK_STACK ? stack
                                            : PyMem_Calloc(size ? size : 1, sizeof(RankEntry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (; i < size; i++) {
        CauseSlot *slot = &l->cause_slots[i];
        RankEntry *e = &entries[i];
        e->cause = slot->cause;
        e->stats = (PyObject *)slot->stats;
        e->site = NULL;
        e->wall = slot->stats->wall_ns;
        e->count = slot->stats->count;
        e->index = i;
    }
    /* By the totals first; the site is read only where totals tie (rare: a
     * request's crossings take different nanoseconds). */
    if (i <= RANK_STACK) {
        /* Insertion sort: for a request's few causes, a fraction of qsort's
         * calls through the comparator (the same order: the comparator is
         * total, its last key the unique index). */
        for (Py_ssize_t k = 1; k < i; k++) {
            RankEntry moving = entries[k];
            Py_ssize_t j = k;
            while (j > 0 && rank_cmp_totals(&moving, &entries[j - 1]) < 0) {
                entries[j] = entries[j - 1];
                j--;
            }
            entries[j] = moving;
        }
    }
    else {
        qsort(entries, i, sizeof(RankEntry), rank_cmp_totals);
    }
    for (Py_ssize_t start = 0; start < i;) {
        Py_ssize_t end = start + 1;
        while (end < i && entries[end].wall == entries[start].wall &&
               entries[end].count == entries[start].count) {
            end++;
        }
        if (end - start > 1) {
            for (Py_ssize_t k = start; k < end; k++) {
                if (entry_site(&entries[k]) == NULL) {
                    ranked_free(entries, i, stack);
                    return NULL;
                }
            }
            qsort(entries + start, end - start, sizeof(RankEntry), rank_cmp);
        }
        start = end;
    }
    *n = i;
    return entries;
}

static PyObject *
LedgerCore_ranked_causes(LedgerCoreObject *self, PyObject *unused)
{
    (void)unused;
    Py_ssize_t n = 0;
    RankEntry stack[RANK_STACK];
    RankEntry *entries = ledger_ranked(self, &n, stack);
    if (entries == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *pair = PyTuple_Pack(2, entries[i].cause, entries[i].stats);
        if (pair == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    ranked_free(entries, n, stack);
    return list;
}

static inline PyObject *
ms_of(long long ns)
{
    /* The line's rounding: to the microsecond, integer arithmetic (as
     * hopwatch._emit._ms; both divisions are correctly rounded). */
    return PyFloat_FromDouble((double)((ns + 500) / 1000) / 1000.0);
}

static int
put_new(PyObject *dict, PyObject *key, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(dict, key, value);
    Py_DECREF(value);
    return r;
}

static int
is_view(PyObject *kind)
{
    /* Kinds are the literals of hopwatch.schema.KINDS, interned: the compare is
     * by value only for a kind made at run time. */
    return kind == s_view ||
           (PyUnicode_Check(kind) && PyUnicode_Compare(kind, s_view) == 0);
}

/* The line's sites are the top `shown` causes by time, except that the view's
 * crossing is always among them: when none of them is a view's and one ranked
 * lower is, it takes the last place (the order stays by time). Whether the view
 * was called across is what a reader cannot learn from any other field (the
 * audit's traffic mix reads it), and which causes make the top ten of a request
 * with more is up to microseconds. Returns the index of the entry for place
 * `shown - 1` (-1 when nothing is shown), or -1 with an exception set;
 * `view_of(e)` is 1 for a view's entry, 0 for another's, -1 with an exception set. */
static Py_ssize_t
last_shown(RankEntry *entries, Py_ssize_t n, Py_ssize_t shown, int (*view_of)(RankEntry *))
{
    Py_ssize_t last = shown - 1, below = -1;
    if (shown <= 0 || shown >= n) {
        return last;
    }
    /* The causes left out first: usually few, and without a view's the line is
     * the top `shown` whatever they are. */
    for (Py_ssize_t i = shown; i < n && below < 0; i++) {
        int v = view_of(&entries[i]);
        if (v < 0) {
            return -1;
        }
        below = v ? i : -1;
    }
    for (Py_ssize_t i = 0; below >= 0 && i < shown; i++) {
        int v = view_of(&entries[i]);
        if (v) { /* a view's is shown already (or an error: v < 0) */
            return v < 0 ? -1 : last;
        }
    }
    return below >= 0 ? below : last;
}

static int
entry_is_view(RankEntry *e)
{
    PyObject *kind = PyObject_GetAttr(e->cause, s_kind);
    if (kind == NULL) {
        return -1;
    }
    int v = is_view(kind);
    Py_DECREF(kind);
    return v;
}

/* line_sites(limit) -> (sites, how many causes there are): the line's
 * ``sites`` entries for the top ``limit`` causes (see docs/log-schema.md). */
static PyObject *
LedgerCore_line_sites(LedgerCoreObject *self, PyObject *arg)
{
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t n = 0;
    RankEntry stack[RANK_STACK];
    RankEntry *entries = ledger_ranked(self, &n, stack);
    if (entries == NULL) {
        return NULL;
    }
    Py_ssize_t shown = limit < 0 ? 0 : (limit < n ? limit : n);
    Py_ssize_t last = last_shown(entries, n, shown, entry_is_view);
    PyObject *list = last < 0 && shown > 0 ? NULL : PyList_New(shown);
    for (Py_ssize_t i = 0; list != NULL && i < shown; i++) {
        RankEntry *e = &entries[i == shown - 1 ? last : i];
        CauseStatsObject *st = (CauseStatsObject *)e->stats;
        PyObject *site = PyDict_New();
        PyObject *kind = NULL, *call_site = NULL;
        int ok = site != NULL && entry_site(e) != NULL &&
                 (kind = PyObject_GetAttr(e->cause, s_kind)) != NULL &&
                 (call_site = PyObject_GetAttr(e->cause, s_call_site)) != NULL &&
                 PyDict_SetItem(site, s_site, e->site) == 0 &&
                 PyDict_SetItem(site, s_kind, kind) == 0 &&
                 PyDict_SetItem(site, s_direction, st->direction) == 0 &&
                 put_new(site, s_count, PyLong_FromLongLong(st->count)) == 0 &&
                 put_new(site, s_ms, ms_of(st->wall_ns)) == 0 &&
                 put_new(site, s_overhead_ms, ms_of(st->overhead_ns)) == 0;
        if (ok && call_site != Py_None) {
            int truth = PyObject_IsTrue(call_site);
            ok = truth >= 0 && (!truth || PyDict_SetItem(site, s_call_site, call_site) == 0);
        }
        Py_XDECREF(kind);
        Py_XDECREF(call_site);
        if (!ok) {
            Py_XDECREF(site);
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, site);
    }
    ranked_free(entries, n, stack);
    if (list == NULL) {
        return NULL;
    }
    PyObject *result = Py_BuildValue("(Nn)", list, n);
    return result;
}

/* ------------------------------------------------------------ the line, encoded */

/* encode_line: the request line's documented head, up to its ``sites``, as
 * JSON text, straight from the ledger (no dict, no float object per field).
 * The reference is hopwatch._emit.build_event + orjson: the output is the
 * same bytes (tested), and the emitter falls back to that path when this
 * raises (a value of an unexpected type). Strings are escaped as orjson does:
 * '"', '\\' and C0 controls (short forms for \b \t \n \f \r, else \u00xx
 * lowercase); everything else, UTF-8 as it is. */
/* A growing buffer. It may start in the caller's stack buffer (the request
 * line, about 2 KB, fits in 4 KB: no allocation per line, which for a block
 * that size is the system allocator's, about 1,000 instructions with its
 * free); past it, or with none given, on the heap. Released with jb_free. */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
    int heap; /* data is PyMem-allocated (else NULL or the caller's) */
} JBuf;

static int
jb_grow(JBuf *b, Py_ssize_t need)
{
    Py_ssize_t cap = b->cap ? b->cap : 2048;
    while (cap < b->len + need) {
        cap *= 2;
    }
    char *data;
    if (b->heap) {
        data = PyMem_Realloc(b->data, cap);
    }
    else {
        data = PyMem_Malloc(cap);
        if (data != NULL && b->len) {
            memcpy(data, b->data, b->len);
        }
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    b->heap = 1;
    return 0;
}

static inline void
jb_free(JBuf *b)
{
    if (b->heap) {
        PyMem_Free(b->data);
    }
    b->data = NULL;
    b->heap = 0;
}

static inline int
jb_put(JBuf *b, const char *s, Py_ssize_t n)
{
    if (b->len + n > b->cap && jb_grow(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

#define JB_LIT(b, lit) jb_put((b), (lit), (Py_ssize_t)sizeof(lit) - 1)

/* Decimal digits of v (v >= 0) written backwards from end; returns the start. */
static inline char *
digits_back(char *end, unsigned long long v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

static int
jb_ll(JBuf *b, long long v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp;
    unsigned long long magnitude = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    char *start = digits_back(end, magnitude);
    if (v < 0) {
        *--start = '-';
    }
    return jb_put(b, start, end - start);
}

/* Nanoseconds as the line's milliseconds: floor((ns + 500) / 1000) µs, shown
 * as Python's repr of that count / 1000 (the shortest form: trailing zeros of
 * the fraction dropped, at least one digit). */
static int
jb_ms(JBuf *b, long long ns)
{
    long long us = ns + 500;
    us = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
    unsigned long long magnitude = us < 0 ? 0ULL - (unsigned long long)us : (unsigned long long)us;
    char tmp[32];
    char *end = tmp + sizeof tmp;
    int frac = (int)(magnitude % 1000);
    char *p = end;
    /* the fraction, trailing zeros dropped, at least one digit */
    char d3[3] = {(char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10)};
    int keep = 3;
    while (keep > 1 && d3[keep - 1] == '0') {
        keep--;
    }
    p -= keep;
    memcpy(p, d3, keep);
    *--p = '.';
    p = digits_back(p, magnitude / 1000);
    if (us < 0) {
        *--p = '-';
    }
    return jb_put(b, p, end - p);
}

static int
jb_str(JBuf *b, PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "encode_line: a text field is not a str");
        return -1;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL) {
        return -1;
    }
    /* worst case: every byte as \u00xx */
    if (n > (PY_SSIZE_T_MAX / 2 - b->len) / 6) {
        PyErr_NoMemory();
        return -1;
    }
    if (b->len + 6 * n + 2 > b->cap && jb_grow(b, 6 * n + 2) < 0) {
        return -1;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t i = 0;
    for (;;) {
        /* the run of bytes that need no escape, 8 at a time: a word has none of
         * them unless one byte is < 0x20, '"' (0x22) or '\\' (0x5c) */
        Py_ssize_t j = i;
        while (j + 8 <= n) {
            uint64_t w;
            memcpy(&w, u + j, 8);
            const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
            uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
            uint64_t special = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) |
                               ((slash - ones) & ~slash);
            if (special & highs) {
                break;
            }
            j += 8;
        }
        while (j < n && (unsigned char)u[j] >= 0x20 && u[j] != '"' && u[j] != '\\') {
            j++;
        }
        memcpy(out, u + i, j - i);
        out += j - i;
        if (j >= n) {
            break;
        }
        i = j;
        unsigned char c = (unsigned char)u[i++];
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\t': *out++ = 't'; break;
        case '\n': *out++ = 'n'; break;
        case '\f': *out++ = 'f'; break;
        case '\r': *out++ = 'r'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out++ = '"';
    b->len = out - b->data;
    return 0;
}

/* An int field, or null for None. */
static int
jb_int_or_null(JBuf *b, PyObject *v)
{
    if (v == Py_None) {
        return JB_LIT(b, "null");
    }
    if (!PyLong_CheckExact(v)) {
        PyErr_SetString(PyExc_TypeError, "encode_line: a number field is not an int");
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    return jb_ll(b, x);
}

static int
jb_str_or_null(JBuf *b, PyObject *v)
{
    return v == Py_None ? JB_LIT(b, "null") : jb_str(b, v);
}

/* The line's timestamp: now, UTC, to the microsecond ("...T12:34:56.123456Z"),
 * from the clock time.time_ns() reads. The date and time of day are formatted
 * once a second (the civil date from days since the epoch: Howard Hinnant's
 * algorithm, proleptic Gregorian as Python's datetime). Under the GIL. */
static long long g_ts_second = -1;
static char g_ts_text[24]; /* "YYYY-MM-DDTHH:MM:SS" */

static void
civil_text(long long seconds, char *out)
{
    long long days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    long long rest = seconds - days * 86400;
    long long z = days + 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long y = yoe + era * 400;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    long long d = doy - (153 * mp + 2) / 5 + 1;
    long long m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    int fields[6] = {(int)y, (int)m, (int)d, (int)(rest / 3600), (int)(rest / 60 % 60),
                     (int)(rest % 60)};
    static const char seps[6] = {'-', '-', 'T', ':', ':', '\0'};
    char *p = out;
    for (int i = 0; i < 6; i++) {
        int width = i == 0 ? 4 : 2, v = fields[i];
        for (int k = width - 1; k >= 0; k--) {
            p[k] = (char)('0' + v % 10);
            v /= 10;
        }
        p += width;
        if (seps[i]) {
            *p++ = seps[i];
        }
    }
    *p = '\0';
}

static int
jb_timestamp(JBuf *b)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    long long second = (long long)ts.tv_sec;
    if (second < 0 || second > 253402300799LL) { /* year 9999, datetime's limit */
        PyErr_SetString(PyExc_OverflowError, "encode_line: the clock is out of range");
        return -1;
    }
    if (second != g_ts_second) {
        civil_text(second, g_ts_text);
        g_ts_second = second;
    }
    char tmp[32];
    tmp[0] = '"';
    memcpy(tmp + 1, g_ts_text, 19);
    tmp[20] = '.';
    long micro = (long)(ts.tv_nsec / 1000);
    for (int k = 26; k >= 21; k--) {
        tmp[k] = (char)('0' + micro % 10);
        micro /= 10;
    }
    tmp[27] = 'Z';
    tmp[28] = '"';
    return jb_put(b, tmp, 29);
}

/* A cause's parts of its sites entry, encoded once per cause: the text before
 * "direction" ('{"site":...,"kind":...') and after "overhead_ms" (',"call_site":...}'
 * or '}'). Causes are interned and never change; the cache is dropped whole when
 * it grows past CAUSE_JSON_MAX (a process with that many distinct causes). */
#define CAUSE_JSON_MAX 4096
static PyObject *g_cause_json; /* {cause: (head bytes, tail bytes, a view's)} */

static PyObject *
cause_json(RankEntry *e)
{
    PyObject *cause = e->cause;
    PyObject *parts = PyDict_GetItemWithError(g_cause_json, cause);
    if (parts != NULL || PyErr_Occurred()) {
        return parts; /* borrowed */
    }
    PyObject *site = entry_site(e); /* held by the entry */
    if (site == NULL) {
        return NULL;
    }
    PyObject *kind = PyObject_GetAttr(cause, s_kind);
    PyObject *call_site = kind ? PyObject_GetAttr(cause, s_call_site) : NULL;
    JBuf head = {NULL, 0, 0, 0}, tail = {NULL, 0, 0, 0};
    int truth = call_site == NULL ? -1 : (call_site == Py_None ? 0 : PyObject_IsTrue(call_site));
    int ok = truth >= 0 && JB_LIT(&head, "{\"site\":") == 0 && jb_str(&head, site) == 0 &&
             JB_LIT(&head, ",\"kind\":") == 0 && jb_str(&head, kind) == 0 &&
             (!truth || (JB_LIT(&tail, ",\"call_site\":") == 0 && jb_str(&tail, call_site) == 0)) &&
             JB_LIT(&tail, "}") == 0;
    if (ok) {
        parts = Py_BuildValue("(y#y#O)", head.data, head.len, tail.data, tail.len,
                              is_view(kind) ? Py_True : Py_False);
    }
    Py_XDECREF(kind);
    Py_XDECREF(call_site);
    jb_free(&head);
    jb_free(&tail);
    if (parts == NULL) {
        return NULL;
    }
    if (PyDict_GET_SIZE(g_cause_json) >= CAUSE_JSON_MAX) {
        PyDict_Clear(g_cause_json);
    }
    int r = PyDict_SetItem(g_cause_json, cause, parts);
    Py_DECREF(parts); /* the cache holds it */
    return r < 0 ? NULL : parts;
}

static int
jb_bytes(JBuf *b, PyObject *bytes)
{
    return jb_put(b, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
}

static int
cached_is_view(RankEntry *e)
{
    PyObject *parts = cause_json(e);
    return parts == NULL ? -1 : PyTuple_GET_ITEM(parts, 2) == Py_True;
}

static int
jb_sites(JBuf *b, LedgerCoreObject *l, Py_ssize_t limit)
{
    Py_ssize_t n = 0;
    RankEntry stack[RANK_STACK];
    RankEntry *entries = ledger_ranked(l, &n, stack);
    if (entries == NULL) {
        return -1;
    }
    Py_ssize_t shown = limit < 0 ? 0 : (limit < n ? limit : n);
    Py_ssize_t last = last_shown(entries, n, shown, cached_is_view);
    int ok = (shown == 0 || last >= 0) && JB_LIT(b, ",\"sites\":[") == 0;
    for (Py_ssize_t i = 0; ok && i < shown; i++) {
        RankEntry *e = &entries[i == shown - 1 ? last : i];
        CauseStatsObject *st = (CauseStatsObject *)e->stats;
        PyObject *parts = cause_json(e);
        ok = parts != NULL && (i == 0 || JB_LIT(b, ",") == 0) &&
             jb_bytes(b, PyTuple_GET_ITEM(parts, 0)) == 0 &&
             JB_LIT(b, ",\"direction\":") == 0 && jb_str(b, st->direction) == 0 &&
             JB_LIT(b, ",\"count\":") == 0 && jb_ll(b, st->count) == 0 &&
             JB_LIT(b, ",\"ms\":") == 0 && jb_ms(b, st->wall_ns) == 0 &&
             JB_LIT(b, ",\"overhead_ms\":") == 0 && jb_ms(b, st->overhead_ns) == 0 &&
             jb_bytes(b, PyTuple_GET_ITEM(parts, 1)) == 0;
    }
    ok = ok && JB_LIT(b, "]") == 0;
    if (ok && n > shown) {
        ok = JB_LIT(b, ",\"sites_dropped\":") == 0 && jb_ll(b, n - shown) == 0;
    }
    ranked_free(entries, n, stack);
    return ok ? 0 : -1;
}

/* The buffer as a str: ASCII (the usual line) copied straight in, else decoded. */
static PyObject *
jb_text(JBuf *b)
{
    const unsigned char *p = (const unsigned char *)b->data;
    Py_ssize_t i = 0;
    unsigned long long high = 0;
    for (; i + 8 <= b->len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        high |= w;
    }
    for (; i < b->len; i++) {
        high |= p[i];
    }
    if (high & 0x8080808080808080ULL) {
        return PyUnicode_DecodeUTF8(b->data, b->len, NULL);
    }
    PyObject *text = PyUnicode_New(b->len, 127);
    if (text != NULL) {
        memcpy(PyUnicode_DATA(text), b->data, b->len);
    }
    return text;
}

/* encode_line(prefix, request_id, method, route, view, status, interface,
 *             duration_ns, threads, pinned_by, executors, max_in_flight,
 *             concurrent_ns, db_connections, sites_limit) -> str
 * The line from its first field to its sites (and sites_dropped), without
 * the closing brace: the emitter adds the optional fields after it. */
static PyObject *
LedgerCore_encode_line(LedgerCoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "encode_line takes 15 arguments");
        return NULL;
    }
    PyObject *executors = args[10];
    Py_ssize_t limit = PyLong_AsSsize_t(args[14]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyDict_Check(executors)) {
        PyErr_SetString(PyExc_TypeError, "encode_line: executors is not a dict");
        return NULL;
    }
    if (pinned_flush(self) < 0) {
        return NULL;
    }
    char stack[4096];
    JBuf b = {stack, 0, (Py_ssize_t)sizeof stack, 0};
    int ok = 1;
    {
        Py_ssize_t n;
        const char *prefix = PyUnicode_Check(args[0]) ? PyUnicode_AsUTF8AndSize(args[0], &n) : NULL;
        ok = prefix != NULL && jb_put(&b, prefix, n) == 0;
        if (prefix == NULL && !PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "encode_line: prefix is not a str");
        }
    }
    ok = ok && JB_LIT(&b, ",\"timestamp\":") == 0 && jb_timestamp(&b) == 0 &&
         JB_LIT(&b, ",\"request_id\":") == 0 && jb_str(&b, args[1]) == 0 &&
         JB_LIT(&b, ",\"method\":") == 0 && jb_str(&b, args[2]) == 0 &&
         JB_LIT(&b, ",\"route\":") == 0 && jb_str(&b, args[3]) == 0 &&
         JB_LIT(&b, ",\"view\":") == 0 && jb_str_or_null(&b, args[4]) == 0 &&
         JB_LIT(&b, ",\"status\":") == 0 && jb_int_or_null(&b, args[5]) == 0 &&
         JB_LIT(&b, ",\"interface\":") == 0 && jb_str(&b, args[6]) == 0;
    long long duration = ok ? PyLong_AsLongLong(args[7]) : 0;
    ok = ok && !(duration == -1 && PyErr_Occurred());
    ok = ok && JB_LIT(&b, ",\"duration_ms\":") == 0 && jb_ms(&b, duration) == 0 &&
         JB_LIT(&b, ",\"hops\":") == 0 && jb_ll(&b, self->count) == 0 &&
         JB_LIT(&b, ",\"hop_ms\":") == 0 && jb_ms(&b, self->wall_ns) == 0 &&
         JB_LIT(&b, ",\"wait_ms\":") == 0 && jb_ms(&b, self->wait_ns) == 0 &&
         JB_LIT(&b, ",\"overhead_ms\":") == 0 && jb_ms(&b, self->overhead_ns) == 0 &&
         JB_LIT(&b, ",\"work_ms\":") == 0 && jb_ms(&b, self->work_ns) == 0 &&
         JB_LIT(&b, ",\"sync_to_async\":") == 0 && jb_ll(&b, self->sync_to_async) == 0 &&
         JB_LIT(&b, ",\"async_to_sync\":") == 0 && jb_ll(&b, self->async_to_sync) == 0 &&
         JB_LIT(&b, ",\"threads\":") == 0 && jb_int_or_null(&b, args[8]) == 0 &&
         JB_LIT(&b, ",\"new_loops\":") == 0 && jb_ll(&b, self->new_loops) == 0 &&
         JB_LIT(&b, ",\"max_depth\":") == 0 && jb_ll(&b, self->max_depth) == 0 &&
         JB_LIT(&b, ",\"pinned_ms\":") == 0 && jb_ms(&b, self->pinned_ns) == 0 &&
         JB_LIT(&b, ",\"pinned_by\":") == 0 && jb_str_or_null(&b, args[9]) == 0 &&
         JB_LIT(&b, ",\"executors\":{") == 0;
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (ok && PyDict_Next(executors, &pos, &key, &value)) {
        ok = (i++ == 0 || JB_LIT(&b, ",") == 0) && jb_str(&b, key) == 0 &&
             JB_LIT(&b, ":") == 0 && jb_int_or_null(&b, value) == 0;
    }
    ok = ok && JB_LIT(&b, "}") == 0;
    if (ok && args[11] != Py_None) {
        ok = JB_LIT(&b, ",\"max_in_flight\":") == 0 && jb_int_or_null(&b, args[11]) == 0;
        long long concurrent = ok ? PyLong_AsLongLong(args[12]) : 0;
        ok = ok && !(concurrent == -1 && PyErr_Occurred()) &&
             JB_LIT(&b, ",\"concurrent_ms\":") == 0 && jb_ms(&b, concurrent) == 0;
    }
    ok = ok && JB_LIT(&b, ",\"db_connections\":") == 0 && jb_int_or_null(&b, args[13]) == 0 &&
         jb_sites(&b, self, limit) == 0;
    PyObject *text = ok ? jb_text(&b) : NULL;
    jb_free(&b);
    return text;
}

/* The record's fields the usual line reads (RequestRecord's slots). */
static PyObject *s_r_method, *s_r_route, *s_r_view, *s_r_status, *s_r_interface, *s_r_request_id,
    *s_r_started_ns, *s_r_ended_ns, *s_r_handler_thread_id, *s_r_extra;
static PyObject *s_mw_path, *s_scope_token, *s_mw_request;

/* RequestRecord's fields (its __slots__, hopwatch's own), read and written in
 * their slots, as the interpreter's specialised attribute access does, not
 * through a type lookup per access: in a request those lookups miss the type
 * cache (Django's own lookups evict its entries), at about 1,300
 * instructions each (callgrind, Python 3.11). The offsets come from the type's
 * member descriptors, found once per type; a type whose fields are not plain
 * slots (none of hopwatch's) takes the generic path. */
enum {
    RF_METHOD, RF_ROUTE, RF_VIEW, RF_STATUS, RF_INTERFACE, RF_REQUEST_ID, RF_STARTED,
    RF_ENDED, RF_HANDLER, RF_EXTRA, RF_PATH, RF_SCOPE_TOKEN, RF_REQUEST, RF_N
};
static PyObject **const g_rf_names[RF_N] = {
    &s_r_method,  &s_r_route,  &s_r_view,   &s_r_status,         &s_r_interface,
    &s_r_request_id, &s_r_started_ns, &s_r_ended_ns, &s_r_handler_thread_id, &s_r_extra,
    &s_mw_path,   &s_scope_token, &s_mw_request};
static PyTypeObject *g_rf_type; /* the type the offsets are of (held) */
static Py_ssize_t g_rf_offsets[RF_N];

/* 1: obj's type has the fields as plain slots (offsets in g_rf_offsets); 0: not. */
static int
rf_ready(PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (type == g_rf_type) {
        return 1;
    }
    Py_ssize_t offsets[RF_N];
    for (int i = 0; i < RF_N; i++) {
        PyObject *descr = _PyType_Lookup(type, *g_rf_names[i]); /* borrowed */
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            return 0;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
            return 0;
        }
        offsets[i] = member->offset;
    }
    memcpy(g_rf_offsets, offsets, sizeof offsets);
    Py_XSETREF(g_rf_type, (PyTypeObject *)Py_NewRef(type));
    return 1;
}

/* obj.<field> (a new reference), or NULL with AttributeError as getattr gives. */
static PyObject *
rf_get(PyObject *obj, int field)
{
    if (!rf_ready(obj)) {
        return PyObject_GetAttr(obj, *g_rf_names[field]);
    }
    PyObject *value = *(PyObject **)((char *)obj + g_rf_offsets[field]);
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%U'",
                     Py_TYPE(obj)->tp_name, *g_rf_names[field]);
        return NULL;
    }
    return Py_NewRef(value);
}

/* obj.<field> = value. */
static int
rf_set(PyObject *obj, int field, PyObject *value)
{
    if (!rf_ready(obj)) {
        return PyObject_SetAttr(obj, *g_rf_names[field], value);
    }
    PyObject **slot = (PyObject **)((char *)obj + g_rf_offsets[field]);
    PyObject *old = *slot;
    *slot = Py_NewRef(value);
    Py_XDECREF(old);
    return 0;
}

/* encode_usual(prefix, constants, single_thread_ids, sites_limit) -> str | None
 * encode_line's text for the usual request, with the arguments the emitter
 * would otherwise work out in Python (hopwatch._emit.encode_head, the thread
 * fields' fast path in hopwatch._executors.thread_facts, _request_fields,
 * thread_count; no pinned_by) worked out here, from the record. The usual
 * request: every crossing kept, none inside another, no async_to_sync, all run
 * by one thread (or no crossing at all: a WSGI request's sync view), a resolved
 * route, a usual method, an end time. None for any
 * other, and the emitter works them out in Python (the reference).
 * constants: (methods {name: name}, sync interfaces, the kinds single_thread,
 * caller_thread, context_thread, own_executor, default_pool, and the extra key
 * of the database connections' threads). */
static PyObject *
LedgerCore_encode_usual(LedgerCoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != 8 ||
        !PyAnySet_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_usual(prefix, constants, single_thread_ids, sites_limit)");
        return NULL;
    }
    PyObject *constants = args[1];
    Py_ssize_t count = PyList_GET_SIZE(self->details);
    HopObject *first = NULL;
    if (count == 0) {
        /* No hop at all (the usual WSGI request: a sync view behind sync-capable
         * middleware): no thread but the handler's, no executor, none in flight
         * (hopwatch._executors.thread_facts on a record without hops: executors
         * {}, max_in_flight 0, concurrent 0; thread_count 1). */
        if (self->count != 0 || self->n_tids != 0 || self->more_tids != NULL ||
            self->thread_reuses != 0 || self->pinned_ns != 0 || self->pin_ns != 0 ||
            (self->pinned_by && PyDict_GET_SIZE(self->pinned_by) != 0)) {
            Py_RETURN_NONE;
        }
    }
    /* (Pinned time comes only from an async_to_sync: none here, so pinned_by is null.) */
    else if (count != self->count || self->max_depth > 1 || self->async_to_sync != 0 ||
             self->threadless != 0 || self->n_tids != 1 || self->more_tids != NULL ||
             self->pinned_ns != 0 || self->pin_ns != 0 ||
             (self->pinned_by && PyDict_GET_SIZE(self->pinned_by) != 0)) {
        Py_RETURN_NONE;
    }
    else {
        first = (HopObject *)PyList_GET_ITEM(self->details, 0);
        if (!Py_IS_TYPE(first, &HopType) || first->direction != s_sync_to_async ||
            (first->thread_sensitive != Py_True && first->thread_sensitive != Py_False)) {
            Py_RETURN_NONE;
        }
    }
    enum { METHOD, ROUTE, VIEW, STATUS, INTERFACE, REQUEST_ID, STARTED, ENDED, HANDLER, EXTRA, N };
    /* (the first N of the record's fields, in this order) */
    PyObject *v[N] = {NULL};
    PyObject *result = NULL, *executors = NULL, *duration = NULL;
    PyObject *threads = NULL, *db = NULL, *tid = NULL;
    for (int i = 0; i < N; i++) {
        v[i] = rf_get((PyObject *)self, i);
        if (v[i] == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear(); /* not a RequestRecord */
                result = Py_NewRef(Py_None);
            }
            goto done;
        }
    }
    PyObject *method = PyDict_GetItemWithError(PyTuple_GET_ITEM(constants, 0), v[METHOD]);
    if (method == NULL || !PyUnicode_Check(v[ROUTE]) || PyUnicode_GET_LENGTH(v[ROUTE]) == 0 ||
        !PyLong_CheckExact(v[STARTED]) || !PyLong_CheckExact(v[ENDED]) ||
        !PyLong_CheckExact(v[HANDLER]) || (v[EXTRA] != Py_None && !PyDict_Check(v[EXTRA])) ||
        (v[REQUEST_ID] != Py_None && !PyUnicode_Check(v[REQUEST_ID]))) {
        if (!PyErr_Occurred()) {
            result = Py_NewRef(Py_None);
        }
        goto done;
    }
    long long started = PyLong_AsLongLong(v[STARTED]), ended = PyLong_AsLongLong(v[ENDED]);
    unsigned long long handler = PyLong_AsUnsignedLongLong(v[HANDLER]);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (ended == 0 || v[REQUEST_ID] == Py_None) {
        /* still open: its duration is read from the clock; or never seen by the
         * middleware: given its id (hopwatch._emit._request_fields). In Python. */
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *opened = v[EXTRA] == Py_None
                           ? NULL /* no notes (see RequestRecord.notes) */
                           : PyDict_GetItemWithError(v[EXTRA], PyTuple_GET_ITEM(constants, 7));
    if (opened == NULL && PyErr_Occurred()) {
        goto done;
    }
    if (opened != NULL && !PyList_Check(opened)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* The one thread's kind (hopwatch._executors.Classifier.kind): every crossing
     * ran on it, so each is of the first one's kind. (No hop: no kind.) */
    PyObject *kind = NULL;
    unsigned long long thread = first ? first->thread_id : 0;
    if (first != NULL && first->thread_sensitive == Py_True) {
        tid = PyLong_FromUnsignedLongLong(thread);
        int single = tid ? PySet_Contains(args[2], tid) : -1;
        int sync = single < 0 ? -1 : PySet_Contains(PyTuple_GET_ITEM(constants, 1), v[INTERFACE]);
        if (sync < 0) {
            goto done;
        }
        kind = PyTuple_GET_ITEM(constants, single ? 2 : (sync && thread == handler) ? 3 : 4);
    }
    else if (first != NULL) {
        kind = PyTuple_GET_ITEM(constants, first->own_executor ? 5 : 6);
    }
    /* its one thread (checked above); no hop: the handler's alone */
    int handler_ran = first == NULL || self->tids[0] == handler;
    executors = PyDict_New();
    duration = PyLong_FromLongLong(ended > started ? ended - started : 0);
    threads = PyLong_FromLong(handler_ran ? 1 : 2);
    db = PyLong_FromSsize_t(opened != NULL ? PyList_GET_SIZE(opened) : 0);
    PyObject *hops = PyLong_FromSsize_t(count);
    if (executors == NULL || duration == NULL || threads == NULL || db == NULL || hops == NULL ||
        (kind != NULL && PyDict_SetItem(executors, kind, hops) < 0)) {
        Py_XDECREF(hops);
        goto done;
    }
    Py_DECREF(hops);
    PyObject *one = PyLong_FromLong(1), *zero = PyLong_FromLong(0); /* small ints: cached */
    PyObject *request_id = Py_NewRef(v[REQUEST_ID]);
    if (one && zero) {
        /* max_in_flight: 1, or 0 with no hop (one ran at a time; none ran) */
        PyObject *line_args[15] = {args[0], request_id, method, v[ROUTE], v[VIEW], v[STATUS],
                                   v[INTERFACE], duration, threads, Py_None, executors,
                                   first ? one : zero, zero, db, args[3]};
        result = LedgerCore_encode_line(self, line_args, 15);
    }
    Py_XDECREF(one);
    Py_XDECREF(zero);
    Py_XDECREF(request_id);
done:
    for (int i = 0; i < N; i++) {
        Py_XDECREF(v[i]);
    }
    Py_XDECREF(tid);
    Py_XDECREF(executors);
    Py_XDECREF(duration);
    Py_XDECREF(threads);
    Py_XDECREF(db);
    return result;
}

static PyMethodDef LedgerCore_methods[] = {
    {"close", (PyCFunction)LedgerCore_close, METH_NOARGS,
     "No hop is accounted here from now on (they go to `late`)."},
    {"ranked_causes", (PyCFunction)LedgerCore_ranked_causes, METH_NOARGS,
     "[(cause, stats)] by summed wall time, largest first (ties: more hops, site)."},
    {"line_sites", (PyCFunction)LedgerCore_line_sites, METH_O,
     "line_sites(limit) -> (the line's sites entries, how many causes there are)."},
    {"encode_line", (PyCFunction)(void (*)(void))LedgerCore_encode_line, METH_FASTCALL,
     "The request line's head, up to its sites, as JSON text (see hopwatch._emit)."},
    {"encode_usual", (PyCFunction)(void (*)(void))LedgerCore_encode_usual, METH_FASTCALL,
     "encode_line's text for the usual request, its arguments worked out here; else None."},
    {NULL},
};

static PyMemberDef LedgerCore_members[] = {
    {"parent", T_OBJECT, offsetof(LedgerCoreObject, parent), 0,
     "An enclosing ledger that also receives every hop of this one."},
    {"outer_hop", T_OBJECT, offsetof(LedgerCoreObject, outer_hop), 0,
     "The async_to_sync hop whose code was running where this ledger was entered: the "
     "parent of the hops made in it (hopwatch._recorder.enter_scope)."},
    {"closed", T_BOOL, offsetof(LedgerCoreObject, closed), 0, NULL},
    {"details", T_OBJECT, offsetof(LedgerCoreObject, details), READONLY, NULL},
    {"count", T_LONGLONG, offsetof(LedgerCoreObject, count), READONLY, NULL},
    {"sync_to_async", T_LONGLONG, offsetof(LedgerCoreObject, sync_to_async), READONLY, NULL},
    {"async_to_sync", T_LONGLONG, offsetof(LedgerCoreObject, async_to_sync), READONLY, NULL},
    {"wall_ns", T_LONGLONG, offsetof(LedgerCoreObject, wall_ns), READONLY, NULL},
    {"wait_ns", T_LONGLONG, offsetof(LedgerCoreObject, wait_ns), READONLY, NULL},
    {"run_ns", T_LONGLONG, offsetof(LedgerCoreObject, run_ns), READONLY, NULL},
    {"overhead_ns", T_LONGLONG, offsetof(LedgerCoreObject, overhead_ns), READONLY, NULL},
    {"work_ns", T_LONGLONG, offsetof(LedgerCoreObject, work_ns), READONLY, NULL},
    {"new_loops", T_LONGLONG, offsetof(LedgerCoreObject, new_loops), READONLY, NULL},
    {"max_depth", T_LONGLONG, offsetof(LedgerCoreObject, max_depth), READONLY, NULL},
    {"thread_reuses", T_LONGLONG, offsetof(LedgerCoreObject, thread_reuses), READONLY,
     "Threads started for a new loop with the id of an earlier one of its hops (ended)."},
    {"threadless", T_LONGLONG, offsetof(LedgerCoreObject, threadless), READONLY,
     "Hops with no thread recorded (cancelled before they started)."},
    {"pinned_ns", T_LONGLONG, offsetof(LedgerCoreObject, pinned_ns), READONLY, NULL},
    {"detail_dropped", T_LONGLONG, offsetof(LedgerCoreObject, detail_dropped), READONLY, NULL},
    {"cause_limit", T_PYSSIZET, offsetof(LedgerCoreObject, cause_limit), 0, NULL},
    {NULL},
};

static PyTypeObject LedgerCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.LedgerCore",
    .tp_basicsize = sizeof(LedgerCoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A ledger's exact account of hops: counts, sums, causes, kept hops.",
    .tp_new = LedgerCore_new,
    .tp_dealloc = (destructor)LedgerCore_dealloc,
    .tp_traverse = (traverseproc)LedgerCore_traverse,
    .tp_clear = (inquiry)LedgerCore_clear,
    .tp_members = LedgerCore_members,
    .tp_methods = LedgerCore_methods,
    .tp_getset = LedgerCore_getset,
};

/* Account one finished hop. Runs under the GIL without calling Python code
 * (Cause hashes by identity), so it is atomic with respect to other threads
 * finishing hops of the same ledger. */
static inline void
account_stats(CauseStatsObject *st, long long wall, long long wait, long long run,
              long long resume, long long overhead)
{
    st->count++;
    st->wall_ns += wall;
    st->wait_ns += wait;
    st->run_ns += run;
    st->resume_ns += resume;
    st->overhead_ns += overhead;
}

static inline int
ledger_keep(LedgerCoreObject *l, HopObject *hop)
{
    if (PyList_GET_SIZE(l->details) < l->detail_limit) {
        return PyList_Append(l->details, (PyObject *)hop);
    }
    l->detail_dropped++;
    return 0;
}

/* The (cause, direction) keys of the ledgers' causes dicts: one tuple per pair
 * for the process (causes are interned and never change), not one per request
 * that sees the pair, which its record would keep until a garbage collection
 * (asyncio's tasks keep the record: 15 tuples a request on the example site).
 * Causes hold only strings, so keeping one here keeps nothing of any call. */
#define CAUSE_KEYS_MAX 4096
static PyObject *g_cause_keys[2]; /* {cause: (cause, direction)}: sync_to_async, async_to_sync */

static PyObject *
cause_key(PyObject *cause, PyObject *direction)
{
    PyObject *cache = direction == s_sync_to_async   ? g_cause_keys[0]
                      : direction == s_async_to_sync ? g_cause_keys[1]
                                                     : NULL;
    if (cache != NULL) {
        PyObject *key = PyDict_GetItemWithError(cache, cause);
        if (key != NULL) {
            return Py_NewRef(key);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    PyObject *key = PyTuple_Pack(2, cause, direction);
    if (key != NULL && cache != NULL && PyDict_GET_SIZE(cache) < CAUSE_KEYS_MAX &&
        PyDict_SetItem(cache, cause, key) < 0) {
        Py_CLEAR(key);
    }
    return key;
}

/* An async_to_sync made from a sync_to_async's thread that an enclosing
 * async_to_sync already holds (a sync-only middleware's, then the same thread
 * again through a thread-sensitive call inside it): the thread is held once,
 * and its time counted there. */
static int
pin_held(HopObject *hop)
{
    unsigned long long thread = ((HopObject *)hop->parent)->thread_id;
    PyObject *up = ((HopObject *)hop->parent)->parent;
    for (int guard = 0; guard < 64 && up != NULL && Py_IS_TYPE(up, &HopType); guard++) {
        HopObject *a = (HopObject *)up;
        PyObject *from = a->parent;
        if (a->direction == s_async_to_sync && from != NULL && Py_IS_TYPE(from, &HopType) &&
            ((HopObject *)from)->direction == s_sync_to_async &&
            ((HopObject *)from)->thread_id == thread) {
            return 1;
        }
        up = from;
    }
    return 0;
}

/* Whether a crossing in `scope` is in ledger `l` too: `scope` is `l` or a scope
 * inside it (its parent's parent's ...). Asked only of a crossing held by one in
 * another scope (a request served inside another's crossing, or inside a
 * count_hops() block's): there the crossing is nested in the ledgers that have
 * its holder, and outermost in the ones inside them. Kept out of line, off the
 * common path's registers. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline, cold))
#endif
static int
scope_within(PyObject *scope, LedgerCoreObject *l)
{
    for (int guard = 0; guard < 64 && scope != NULL && scope != Py_None &&
                        PyObject_TypeCheck(scope, &LedgerCoreType);
         guard++) {
        if (scope == (PyObject *)l) {
            return 1;
        }
        scope = ((LedgerCoreObject *)scope)->parent;
    }
    return 0;
}

/* Never inlined, as attribute (above): its own code is the fold's part. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static int
ledger_account(LedgerCoreObject *l, HopObject *hop)
{
    long long called = hop->called_ns, started = hop->started_ns, resumed = hop->resumed_ns;
    long long wall = clamp0(resumed - called), wait, run, resume;
    if (started) {
        long long ended = hop_end(hop);
        wait = clamp0(started - called);
        run = clamp0(ended - started);
        resume = clamp0(resumed - ended);
    }
    else {
        wait = wall;
        run = resume = 0;
    }
    long long overhead = clamp0(wall - run);
    int s2a = hop->direction == s_sync_to_async;
    l->count++;
    if (s2a) {
        l->sync_to_async++;
    }
    else {
        l->async_to_sync++;
    }
    l->wall_ns += wall;
    l->wait_ns += wait;
    l->run_ns += run;
    l->overhead_ns += overhead;
    PyObject *parent = hop->parent, *holder = parent;
    /* A parent whose run is over (a task its code started outlived it): the
     * crossing whose run this one ended in is further up, if any. (Under the
     * GIL, as the parent's own accounting, which follows its end.) */
    while (holder != NULL && Py_IS_TYPE(holder, &HopType) &&
           (((HopObject *)holder)->ended_ns || ((HopObject *)holder)->resumed_ns)) {
        holder = ((HopObject *)holder)->parent;
    }
    int nested = holder != NULL && Py_IS_TYPE(holder, &HopType);
    PyObject *held_in = NULL; /* the holder's scope */
    if (nested) {
        held_in = ((HopObject *)holder)->scope;
        if (held_in != hop->scope) { /* a request served inside the holder's run */
            nested = scope_within(held_in, l);
        }
    }
    /* The work in this crossing: its run less what the crossings made in it
     * spent crossing (hop_inner). */
    long long inner = hop_inner(hop, run);
    if (!nested) {
        l->work_ns += run - inner; /* an outermost crossing in this ledger */
    }
    else if ((PyObject *)l == held_in || (held_in == Py_None && (PyObject *)l == g_unscoped)) {
        /* in its holder's run; once, in its holder's ledger (a hop of no scope
         * is accounted in the unscoped one) */
        ((HopObject *)holder)->inner_ns += overhead + inner;
        ((HopObject *)holder)->inner_work_ns += run - inner;
    }
    if (!s2a && parent != NULL && Py_IS_TYPE(parent, &HopType) &&
        ((HopObject *)parent)->direction == s_sync_to_async && !pin_held(hop)) {
        /* A worker thread held while async work ran: pinned, by the cause of
         * the sync_to_async hop that holds it. */
        PyObject *by = ((HopObject *)parent)->cause;
        l->pinned_ns += wall;
        if (by != l->pin_cause) {
            if (pinned_flush(l) < 0) {
                return -1;
            }
            l->pin_cause = Py_NewRef(by);
        }
        l->pin_ns += wall;
    }
    if (hop->new_loop) {
        l->new_loops++;
    }
    if (hop->depth > l->max_depth) {
        l->max_depth = hop->depth;
    }
    unsigned long long thread_id = hop->thread_id;
    if (!thread_id) {
        l->threadless++;
    }
    else {
        int seen = 0;
        for (int i = 0; i < l->n_tids; i++) {
            if (l->tids[i] == thread_id) {
                seen = 1;
                break;
            }
        }
        if (!seen && l->n_tids < 8) {
            l->tids[l->n_tids++] = thread_id;
        }
        else if (!seen) { /* a ninth thread or more: the set */
            if (l->more_tids == NULL && (l->more_tids = PySet_New(NULL)) == NULL) {
                return -1;
            }
            PyObject *tid = PyLong_FromUnsignedLongLong(thread_id);
            if (tid == NULL || (seen = PySet_Contains(l->more_tids, tid)) < 0 ||
                (!seen && PySet_Add(l->more_tids, tid) < 0)) {
                Py_XDECREF(tid);
                return -1;
            }
            Py_DECREF(tid);
        }
        if (seen && hop->new_thread) { /* a new thread with an id an ended one had */
            l->thread_reuses++;
        }
    }
    PyObject *cause = hop->cause, *direction = hop->direction;
    if (cause == l->last_cause && direction == l->last_direction && cause != NULL) {
        account_stats(l->last_stats, wall, wait, run, resume, overhead);
        return ledger_keep(l, hop);
    }
    CauseStatsObject *stats = cause_find(l, cause, direction);
    if (stats != NULL) {
        l->last_cause = cause;
        l->last_direction = direction;
        l->last_stats = stats;
    }
    else {
        int past = l->n_causes >= l->cause_limit && g_overflow_cause;
        if (past && cause != NULL) {
            /* The view's crossing keeps an entry of its own past the limit (the
             * line always lists it, docs/settings.md SITES_LIMIT): one more. */
            PyObject *kind = PyObject_GetAttr(cause, s_kind);
            if (kind == NULL) {
                PyErr_Clear(); /* not a Cause: into the overflow cause */
            }
            else {
                past = !is_view(kind);
                Py_DECREF(kind);
            }
        }
        if (past) {
            /* Past the limit: into the overflow cause (one per direction). */
            stats = cause_find(l, g_overflow_cause, hop->direction);
            if (stats == NULL) {
                stats = cause_add(l, g_overflow_cause, hop->direction);
            }
        }
        else if ((stats = cause_add(l, cause, direction)) != NULL) {
            l->last_cause = cause;
            l->last_direction = direction;
            l->last_stats = stats;
        }
        if (stats == NULL) {
            return -1;
        }
    }
    account_stats(stats, wall, wait, run, resume, overhead);
    return ledger_keep(l, hop);
}

static int
ledger_add(PyObject *ledger, PyObject *hop)
{
    /* This ledger, then every enclosing one. */
    int guard = 0;
    while (ledger != NULL && ledger != Py_None && guard++ < 64) {
        if (!PyObject_TypeCheck(ledger, &LedgerCoreType)) {
            PyErr_SetString(PyExc_TypeError, "hopwatch: a scope that is not a Ledger");
            return -1;
        }
        LedgerCoreObject *l = (LedgerCoreObject *)ledger;
        if (l->details == NULL || ledger_account(l, (HopObject *)hop) < 0) {
            return -1;
        }
        ledger = l->parent;
    }
    return 0;
}

static int finish_hop_account(HopObject *hop);

/* Account a finished hop, then drop its link to the ledger: a kept hop then
 * references no ledger, so a request's record and its hops form no cycle and
 * are freed as soon as the request is done with (no garbage collection). */
static int
finish_hop_impl(HopObject *hop)
{
    int rc = finish_hop_account(hop);
    Py_SETREF(hop->scope, Py_NewRef(Py_None));
    return rc;
}

static int
finish_hop_account(HopObject *hop)
{
    PyObject *scope = hop->scope;
    if (scope == NULL || scope == Py_None) {
        return ledger_add(g_unscoped, (PyObject *)hop);
    }
    if (!PyObject_TypeCheck(scope, &LedgerCoreType)) {
        PyErr_SetString(PyExc_TypeError, "hopwatch: a scope that is not a Ledger");
        return -1;
    }
    if (((LedgerCoreObject *)scope)->closed) {
        /* Late: an enclosing scope still open (a test's count_hops() block
         * around a request) still gets it; kept in `late` without its links,
         * so it keeps no request alive. */
        PyObject *parent = ((LedgerCoreObject *)scope)->parent;
        int guard = 0;
        while (parent != NULL && parent != Py_None && guard++ < 64 &&
               PyObject_TypeCheck(parent, &LedgerCoreType) &&
               ((LedgerCoreObject *)parent)->closed) {
            parent = ((LedgerCoreObject *)parent)->parent;
        }
        Py_XINCREF(parent);
        Py_SETREF(hop->scope, Py_NewRef(Py_None));
        Py_SETREF(hop->parent, Py_NewRef(Py_None));
        int rc = ledger_add(g_late, (PyObject *)hop);
        if (rc == 0 && parent != NULL && parent != Py_None) {
            rc = ledger_add(parent, (PyObject *)hop);
        }
        Py_XDECREF(parent);
        return rc;
    }
    return ledger_add(scope, (PyObject *)hop);
}

static PyObject *
finish_hop(PyObject *module, PyObject *hop)
{
    (void)module;
    if (!Py_IS_TYPE(hop, &HopType)) {
        PyErr_SetString(PyExc_TypeError, "finish_hop() takes a Hop");
        return NULL;
    }
    if (finish_hop_impl((HopObject *)hop) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ attribution */

/* Two caches, keyed by raw facts that never keep a call's objects alive:
 * - first level: what the adapter runs (a summary of the target: code object,
 *   qualified name, module, the bound instance's type, ...) and the calling
 *   frame (code object and bytecode offset). Its entry is the cause, or says
 *   the cause also depends on the user's call site, or that it must be asked
 *   for every time (a rule that reads the instance itself, e.g. which Signal).
 * - second level, for the call-site ones: the same key plus the first frame
 *   outside library code (code object and offset).
 * Objects in keys are held strongly (code objects, types, strings: long-lived),
 * so an address can never be reused while cached; raw pointers (a builtin's
 * PyMethodDef) are static. */

#define MODE_FINAL 0
#define MODE_USER 1
#define MODE_ASK 2
/* First level only: the caller is a layer other code wrapped over hopwatch's
 * __call__ (g_layer says): the cause is asked from the frame past it. */
#define MODE_LAYER 3

#define KEY_SLOTS 6
typedef struct {
    uintptr_t k[KEY_SLOTS];
    /* What keeps the key's addresses valid (see hold()), and those addresses. */
    PyObject *held[4];
    uintptr_t held_at[4];
    PyObject *cause;
    PyObject *rule; /* MODE_ASK: the rule that answered, asked directly next time */
    /* MODE_USER, first level: the answer when the caller's frame is itself
     * the first user frame (its code is user code, a fact of the key's code
     * object), so the second level's key is this key's own: the call site
     * answered without the frame walk and the second lookup. */
    PyObject *direct;
    int mode;
    int used;
} CacheEntry;

#define CACHE_SIZE 4096 /* power of two */
#define CACHE_MAX_USED (CACHE_SIZE / 2)

typedef struct {
    CacheEntry *entries;
    int used;
} Cache;

static Cache g_first, g_second;

/* Classes and code objects in the caches' keys are held by weak reference: a
 * class a request made (a form or serializer factory's) or code it compiled
 * must not outlive the request because a hop ran its method. When one dies,
 * its address may come back as another's, so the next attribution clears the
 * caches first (the callback only sets the flag: it may run inside any
 * deallocation, in the middle of a cache lookup). Strings and modules, which
 * keep nothing of a call, are held as they are. */
static int g_caches_stale;
static PyObject *g_stale_callback;

static PyObject *
caches_went_stale(PyObject *module, PyObject *ref)
{
    (void)module;
    (void)ref;
    g_caches_stale = 1;
    Py_RETURN_NONE;
}

static PyMethodDef g_stale_def = {"caches_went_stale", caches_went_stale, METH_O, NULL};

/* A new reference that keeps `obj`'s address from being another's while the
 * cache has it: a weak one for a class or a code object, else `obj` itself. */
static PyObject *
hold(PyObject *obj)
{
    if (obj == NULL) {
        return NULL;
    }
    if (g_stale_callback != NULL && (PyType_Check(obj) || PyCode_Check(obj))) {
        PyObject *ref = PyWeakref_NewRef(obj, g_stale_callback);
        if (ref != NULL) {
            return ref;
        }
        PyErr_Clear();
    }
    return Py_NewRef(obj);
}

static void
cache_clear(Cache *c)
{
    if (c->entries == NULL) {
        return;
    }
    for (int i = 0; i < CACHE_SIZE; i++) {
        CacheEntry *e = &c->entries[i];
        if (!e->used) {
            continue;
        }
        for (int j = 0; j < 4; j++) {
            Py_CLEAR(e->held[j]);
        }
        Py_CLEAR(e->cause);
        Py_CLEAR(e->rule);
        Py_CLEAR(e->direct);
        e->used = 0;
    }
    c->used = 0;
}

static inline size_t
key_hash(const uintptr_t *k)
{
    size_t h = 1469598103934665603ULL;
    for (int i = 0; i < KEY_SLOTS; i++) {
        h ^= (size_t)(k[i] >> 3);
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    return h;
}

/* The entry of key k, whose key_hash is hash; NULL when there is none. */
static CacheEntry *
cache_find(Cache *c, const uintptr_t *k, size_t hash)
{
    if (c->entries == NULL) {
        return NULL;
    }
    size_t i = hash & (CACHE_SIZE - 1);
    for (;;) {
        CacheEntry *e = &c->entries[i];
        if (!e->used) {
            return NULL;
        }
        if (memcmp(e->k, k, sizeof(e->k)) == 0) {
            return e;
        }
        i = (i + 1) & (CACHE_SIZE - 1);
    }
}

static int
cache_put(Cache *c, const uintptr_t *k, PyObject **held, PyObject *cause, int mode,
          PyObject *rule)
{
    if (c->entries == NULL) {
        c->entries = PyMem_Calloc(CACHE_SIZE, sizeof(CacheEntry));
        if (c->entries == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (c->used >= CACHE_MAX_USED) {
        cache_clear(c); /* bounded: a program that makes call sites at run time */
    }
    size_t i = key_hash(k) & (CACHE_SIZE - 1);
    while (c->entries[i].used) {
        if (memcmp(c->entries[i].k, k, sizeof(c->entries[i].k)) == 0) {
            return 0;
        }
        i = (i + 1) & (CACHE_SIZE - 1);
    }
    CacheEntry *e = &c->entries[i];
    memcpy(e->k, k, sizeof(e->k));
    for (int j = 0; j < 4; j++) {
        e->held[j] = hold(held[j]);
        e->held_at[j] = (uintptr_t)held[j];
    }
    e->cause = cause;
    Py_XINCREF(cause);
    e->rule = (rule == Py_None) ? NULL : Py_XNewRef(rule);
    e->direct = NULL;
    e->mode = mode;
    e->used = 1;
    c->used++;
    return 0;
}

/* The summary of a target: up to three key slots and the objects to hold.
 * Returns 0, or -1 when the target is of a shape not worth caching (always ask). */
static int
summarize_target(PyObject *target, uintptr_t *k, PyObject **held)
{
    uintptr_t wrapped = 0;
    for (int depth = 0; depth < 4 && Py_TYPE(target) == (PyTypeObject *)g_partial_type;
         depth++) {
        /* functools.partial: named after what it wraps. */
        PyObject *inner = PyObject_GetAttr(target, s_func);
        if (inner == NULL) {
            PyErr_Clear();
            return -1;
        }
        Py_DECREF(inner); /* alive through the partial */
        target = inner;
        wrapped++;
    }
    k[3] = wrapped;
    if (PyFunction_Check(target)) {
        PyFunctionObject *f = (PyFunctionObject *)target;
        k[0] = (uintptr_t)f->func_code;
        k[1] = (uintptr_t)f->func_qualname;
        k[2] = (uintptr_t)f->func_module;
        held[0] = f->func_code;
        held[1] = f->func_qualname;
        held[2] = f->func_module;
        return 0;
    }
    if (PyMethod_Check(target)) {
        PyObject *func = PyMethod_GET_FUNCTION(target);
        PyObject *owner = PyMethod_GET_SELF(target);
        PyObject *owner_type = PyType_Check(owner) ? owner : (PyObject *)Py_TYPE(owner);
        if (PyFunction_Check(func)) {
            PyFunctionObject *f = (PyFunctionObject *)func;
            k[0] = (uintptr_t)f->func_code;
            k[1] = (uintptr_t)f->func_qualname;
            held[0] = f->func_code;
            held[1] = f->func_qualname;
        }
        else {
            return -1;
        }
        k[2] = (uintptr_t)owner_type;
        held[2] = owner_type;
        k[3] |= 0x10;
        return 0;
    }
    if (PyCFunction_Check(target)) {
        PyCFunctionObject *cf = (PyCFunctionObject *)target;
        PyObject *owner = cf->m_self;
        PyObject *owner_type = (owner == NULL || PyModule_Check(owner))
                                   ? owner
                                   : (PyType_Check(owner) ? owner : (PyObject *)Py_TYPE(owner));
        k[0] = (uintptr_t)cf->m_ml; /* static: lives as long as its module */
        k[1] = (uintptr_t)owner_type;
        k[2] = 0;
        held[1] = owner_type;
        k[3] |= 0x20;
        return 0;
    }
    if (PyType_Check(target)) {
        k[0] = (uintptr_t)target;
        k[1] = k[2] = 0;
        held[0] = target;
        k[3] |= 0x40;
        return 0;
    }
    /* A callable instance: named after its class. */
    k[0] = (uintptr_t)Py_TYPE(target);
    k[1] = k[2] = 0;
    held[0] = (PyObject *)Py_TYPE(target);
    k[3] |= 0x80;
    return 0;
}

/* Library-code answers per code object: 0 user code, 1 library, 2 the event
 * loop's own dispatch (stop: whatever is above is not who awaited). */
typedef struct {
    PyObject *code; /* its address; held by `held` (see hold()) */
    PyObject *held;
    int kind;
} CodeKind;
#define CODE_CACHE_SIZE 8192
static CodeKind *g_codes;
static int g_codes_used;

static void
codes_clear(void)
{
    if (g_codes == NULL) {
        return;
    }
    for (int j = 0; j < CODE_CACHE_SIZE; j++) {
        g_codes[j].code = NULL;
        Py_CLEAR(g_codes[j].held);
    }
    g_codes_used = 0;
}

static int
code_kind(PyObject *code)
{
    if (g_codes == NULL) {
        g_codes = PyMem_Calloc(CODE_CACHE_SIZE, sizeof(CodeKind));
        if (g_codes == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    size_t i = ((uintptr_t)code >> 4) & (CODE_CACHE_SIZE - 1);
    for (;;) {
        if (g_codes[i].code == code) {
            return g_codes[i].kind;
        }
        if (g_codes[i].code == NULL) {
            break;
        }
        i = (i + 1) & (CODE_CACHE_SIZE - 1);
    }
    PyObject *r = PyObject_CallOneArg(g_classify_code, code);
    if (r == NULL) {
        return -1;
    }
    int kind = (int)PyLong_AsLong(r);
    Py_DECREF(r);
    if (kind == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (g_codes_used >= CODE_CACHE_SIZE / 2) {
        codes_clear();
        i = ((uintptr_t)code >> 4) & (CODE_CACHE_SIZE - 1);
    }
    g_codes[i].code = code;
    g_codes[i].held = hold(code);
    g_codes[i].kind = kind;
    g_codes_used++;
    return kind;
}

#define AWAITING_FLAGS (CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR)

/* The first frame at or above `frame` outside library code (a new
 * reference), or NULL with no error when there is none. The walk stops where
 * a coroutine's frame was resumed by a frame that awaits nothing: whatever
 * drives the event loop (asyncio's Handle._run, or, where a loop dispatches
 * from C as uvloop does, the code that started the loop), never the caller;
 * hopwatch._causes.user_frame is the reference. */
static PyFrameObject *
user_frame(PyFrameObject *frame)
{
    Py_XINCREF(frame);
    int guard = 0;
    while (frame != NULL && guard++ < 1000) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        int kind = code_kind((PyObject *)code);
        int awaiting = code->co_flags & AWAITING_FLAGS;
        Py_DECREF(code);
        if (kind < 0) {
            Py_DECREF(frame);
            return NULL;
        }
        if (kind == 0) {
            return frame;
        }
        if (kind == 2) {
            break;
        }
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
        if (awaiting && frame != NULL) {
            PyCodeObject *driver = PyFrame_GetCode(frame);
            int flags = driver->co_flags;
            Py_DECREF(driver);
            if (!(flags & (AWAITING_FLAGS | CO_GENERATOR))) {
                break;
            }
        }
    }
    Py_XDECREF(frame);
    return NULL;
}

/* resolve(adapter, target, frame) -> (cause, mode, rule): `rule` (a new
 * reference, or NULL) is the rule that answered a MODE_ASK, to be asked
 * directly for that key next time. */
static PyObject *
ask_python(PyObject *adapter, PyObject *target, PyFrameObject *frame, int *mode,
           PyObject **rule)
{
    PyObject *r = PyObject_CallFunctionObjArgs(g_resolve, adapter, target,
                                               frame ? (PyObject *)frame : Py_None, NULL);
    if (r == NULL) {
        return NULL;
    }
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 3) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "hopwatch: resolve() must return (cause, mode, rule)");
        return NULL;
    }
    PyObject *cause = Py_NewRef(PyTuple_GET_ITEM(r, 0));
    *mode = (int)PyLong_AsLong(PyTuple_GET_ITEM(r, 1));
    if (rule != NULL) {
        PyObject *answered = PyTuple_GET_ITEM(r, 2);
        *rule = answered == Py_None ? NULL : Py_NewRef(answered);
    }
    Py_DECREF(r);
    return cause;
}

static PyTypeObject PatchType;

/* Whether `frame`, which called hopwatch's __call__ for `adapter`, runs a layer
 * other code wrapped over it (an APM agent's wrapper) and passes this adapter's
 * call on (it holds the adapter; a crossing the layer makes of its own, with
 * another adapter, is its own): 1, 0, or -1 with an error set. Only asked on a
 * first-level miss, and of g_layer only when the adapter class's __call__ is not
 * a Patch (something is over hopwatch's). */
static int
is_layer(PyObject *adapter, PyFrameObject *frame)
{
    if (g_layer == NULL) {
        return 0;
    }
    PyObject *top = _PyType_Lookup(Py_TYPE(adapter), s_call); /* borrowed */
    if (top == NULL || Py_IS_TYPE(top, &PatchType)) {
        return 0;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(g_layer, adapter, (PyObject *)frame, NULL);
    if (r == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

/* The frame that called the layer running in `frame` (a new reference), or NULL
 * where that layer is a coroutine stepped by what drives the loop (a task's own):
 * who awaited it is unknown. hopwatch._hotpath_py._past_layer is the reference. */
static PyFrameObject *
past_layer(PyFrameObject *frame)
{
    PyCodeObject *code = PyFrame_GetCode(frame);
    int awaiting = code->co_flags & AWAITING_FLAGS;
    Py_DECREF(code);
    PyFrameObject *back = PyFrame_GetBack(frame);
    if (awaiting && back != NULL) {
        PyCodeObject *driver = PyFrame_GetCode(back);
        int flags = driver->co_flags;
        Py_DECREF(driver);
        if (!(flags & (AWAITING_FLAGS | CO_GENERATOR))) {
            Py_CLEAR(back);
        }
    }
    return back;
}

static PyObject *attribute(PyObject *adapter, PyObject *target, PyFrameObject *frame);

/* attribute() from the frame past the layer running in `frame`. */
static PyObject *
attribute_past_layer(PyObject *adapter, PyObject *target, PyFrameObject *frame)
{
    PyFrameObject *back = past_layer(frame);
    PyObject *result = attribute(adapter, target, back);
    Py_XDECREF(back);
    return result;
}

/* The cause of a hop through `adapter` running `target`, called from `frame`.
 * When `frame` runs a layer other code wrapped over hopwatch's __call__ (see
 * is_layer), the cause is the one of a call from the frame that called that
 * layer, as without it; the key's first-level entry (MODE_LAYER) says so.
 * Never inlined: bench.instructions reports hopwatch's own code by part, by
 * the function it runs in (bench/own_code.py), and an inlined copy would count
 * attribution as its caller's (a call's few instructions a hop). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static PyObject *
attribute(PyObject *adapter, PyObject *target, PyFrameObject *frame)
{
    PyObject *tagged = NULL;
    int has_tag = instance_value(adapter, s_tag, &tagged);
    if (has_tag != 0) {
        return has_tag > 0 ? tagged : NULL;
    }

    if (g_caches_stale) { /* a class or code object they held died */
        g_caches_stale = 0;
        cache_clear(&g_first);
        cache_clear(&g_second);
        codes_clear();
    }
    uintptr_t k[KEY_SLOTS] = {0};
    PyObject *held[4] = {NULL, NULL, NULL, NULL};
    if (summarize_target(target, k, held) < 0) {
        if (frame != NULL) { /* uncached: past any layer each time */
            int layer = is_layer(adapter, frame);
            if (layer != 0) {
                return layer < 0 ? NULL : attribute_past_layer(adapter, target, frame);
            }
        }
        int mode;
        return ask_python(adapter, target, frame, &mode, NULL);
    }
    PyCodeObject *caller_code = NULL;
    if (frame != NULL) {
        caller_code = PyFrame_GetCode(frame);
        k[4] = (uintptr_t)caller_code;
        k[5] = (uintptr_t)PyFrame_GetLasti(frame);
        held[3] = (PyObject *)caller_code;
    }
    PyObject *result = NULL;
    size_t first_hash = key_hash(k); /* also the second level's first slot */
    CacheEntry *first = cache_find(&g_first, k, first_hash);
    if (first != NULL && first->mode == MODE_FINAL) {
        result = Py_NewRef(first->cause);
        goto done;
    }
    if (first != NULL && first->direct != NULL) {
        result = Py_NewRef(first->direct);
        goto done;
    }
    if (first != NULL && first->mode == MODE_ASK) {
        if (first->rule != NULL) {
            /* The rule that answered for this key, without resolve()'s search. */
            PyObject *args[2] = {target, frame ? (PyObject *)frame : Py_None};
            result = PyObject_Vectorcall(first->rule, args, 2, NULL);
            if (result == NULL || result != Py_None) {
                goto done;
            }
            Py_CLEAR(result);
        }
        int mode;
        result = ask_python(adapter, target, frame, &mode, NULL);
        goto done;
    }
    if (first == NULL ? caller_code != NULL : first->mode == MODE_LAYER) {
        int layer = first != NULL ? 1 : is_layer(adapter, frame);
        if (layer < 0) {
            goto done;
        }
        if (layer) {
            if (first == NULL &&
                cache_put(&g_first, k, held, Py_None, MODE_LAYER, NULL) < 0) {
                goto done;
            }
            result = attribute_past_layer(adapter, target, frame);
            goto done;
        }
    }
    /* The user-call-site level: the key plus the first user frame. */
    uintptr_t k2[KEY_SLOTS];
    PyObject *held2[4] = {NULL, NULL, NULL, NULL};
    PyFrameObject *user = NULL;
    PyCodeObject *user_code = NULL;
    if (first != NULL) {
        user = frame ? user_frame(frame) : NULL;
        if (user == NULL && PyErr_Occurred()) {
            goto done;
        }
        uintptr_t user_lasti = 0;
        if (user != NULL) {
            user_code = PyFrame_GetCode(user);
            user_lasti = (uintptr_t)PyFrame_GetLasti(user) + 1;
        }
        /* Fold the first-level key into three slots, then the user frame. */
        k2[0] = first_hash;
        k2[1] = k[4];
        k2[2] = k[5];
        k2[3] = (uintptr_t)user_code;
        k2[4] = user_lasti;
        k2[5] = 0x5EC0;
        CacheEntry *second = cache_find(&g_second, k2, key_hash(k2));
        /* The folded hash could collide: the first-level entry's facts must
         * match too, which they do when the key objects are the ones held. */
        if (second != NULL && second->held_at[0] == first->held_at[0] &&
            second->held_at[1] == first->held_at[1] &&
            second->held_at[2] == first->held_at[2]) {
            result = Py_NewRef(second->cause);
            if (user == frame && first->mode == MODE_USER) {
                Py_XSETREF(first->direct, Py_NewRef(result));
            }
            goto done_user;
        }
    }
    {
        int mode = MODE_ASK;
        PyObject *rule = NULL;
        result = ask_python(adapter, target, frame, &mode, &rule);
        if (result == NULL) {
            goto done_user;
        }
        if (first == NULL) {
            int put = cache_put(&g_first, k, held, result, mode, mode == MODE_ASK ? rule : NULL);
            Py_XDECREF(rule);
            if (put < 0) {
                Py_CLEAR(result);
                goto done_user;
            }
            if (mode != MODE_USER) {
                goto done_user;
            }
            /* Fill the second level for this call site too. */
            user = frame ? user_frame(frame) : NULL;
            if (user == NULL && PyErr_Occurred()) {
                Py_CLEAR(result);
                goto done_user;
            }
            uintptr_t user_lasti = 0;
            if (user != NULL) {
                user_code = PyFrame_GetCode(user);
                user_lasti = (uintptr_t)PyFrame_GetLasti(user) + 1;
            }
            k2[0] = first_hash;
            k2[1] = k[4];
            k2[2] = k[5];
            k2[3] = (uintptr_t)user_code;
            k2[4] = user_lasti;
            k2[5] = 0x5EC0;
        }
        else {
            Py_XDECREF(rule);
            if (mode != MODE_USER) {
                goto done_user;
            }
        }
        held2[0] = held[0];
        held2[1] = held[1];
        held2[2] = held[2];
        held2[3] = (PyObject *)user_code;
        if (cache_put(&g_second, k2, held2, result, MODE_FINAL, NULL) < 0) {
            Py_CLEAR(result);
        }
    }
done_user:
    Py_XDECREF(user);
    Py_XDECREF(user_code);
done:
    Py_XDECREF(caller_code);
    return result;
}

static PyObject *
py_attribute(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "attribute(adapter, target, frame)");
        return NULL;
    }
    PyObject *frame = args[2];
    if (frame != Py_None && !PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame must be a frame or None");
        return NULL;
    }
    return attribute(args[0], args[1], frame == Py_None ? NULL : (PyFrameObject *)frame);
}

static PyObject *
py_clear_caches(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    cache_clear(&g_first);
    cache_clear(&g_second);
    codes_clear();
    if (g_cause_json) {
        PyDict_Clear(g_cause_json);
    }
    for (int i = 0; i < 2; i++) {
        if (g_cause_keys[i]) {
            PyDict_Clear(g_cause_keys[i]);
        }
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------- HopAwaitable */

/* The awaitable hopwatch puts around asgiref's coroutines, without a Python
 * frame of its own: kind S2A wraps SyncToAsync.__call__'s coroutine (the hop is
 * set up when it is first driven, in the awaiting task's context, and ended
 * when it finishes); kind CODE wraps the awaitable AsyncToSync.main_wrap is
 * given (asgiref 3.9 and later), on the target loop: the code's start and end,
 * with the hop as the scope variable's value while it runs; kind MAIN wraps
 * main_wrap's own coroutine (asgiref 3.8, whose main_wrap makes the awaitable
 * itself): the code's start and end. Everything else is delegated to the
 * wrapped coroutine, which does all the work exactly as without hopwatch. */

#define KIND_S2A 1
#define KIND_MAIN 2
#define KIND_CODE 3

#define ST_FRESH 0
#define ST_RUNNING 1
#define ST_DONE 2
#define ST_PASSTHROUGH 3

typedef struct {
    PyObject_HEAD
    PyObject *inner;
    PyObject *adapter; /* S2A, until it starts */
    HopObject *hop;
    PyObject *ctx;  /* KIND_CODE: the context it runs in (see run_context) */
    PyObject *vars; /* ...and that context's variables as hopwatch made them */
    PyObject *weakreflist; /* a coroutine can be weakly referenced: so can this */
    int kind;
    int state;
} HopAwaitableObject;

static PyTypeObject HopAwaitableType;

#ifndef Py_GIL_DISABLED
/* Awaitables freed and kept for reuse, as the hops are (see Hop_dealloc):
 * every hop makes one, and the collector's allocation and free cost some 150
 * instructions a hop. Each is untracked and holds nothing while it waits
 * here; one the collector finalized is never kept (see HopAwaitable_dealloc). */
#define FREE_AWAITABLES 16
static HopAwaitableObject *g_free_awaitables[FREE_AWAITABLES];
static int g_free_awaitables_n;
#endif

static HopAwaitableObject *
awaitable_make(int kind, PyObject *inner, PyObject *adapter, HopObject *hop)
{
    HopAwaitableObject *a;
#ifndef Py_GIL_DISABLED
    if (g_free_awaitables_n > 0) {
        a = g_free_awaitables[--g_free_awaitables_n];
        (void)PyObject_Init((PyObject *)a, &HopAwaitableType);
    }
    else
#endif
    {
        a = PyObject_GC_New(HopAwaitableObject, &HopAwaitableType);
        if (a == NULL) {
            return NULL;
        }
    }
    a->inner = Py_NewRef(inner);
    a->adapter = Py_XNewRef(adapter);
    a->hop = (HopObject *)Py_XNewRef(hop);
    a->ctx = NULL;
    a->vars = NULL;
    a->weakreflist = NULL;
    a->kind = kind;
    a->state = ST_FRESH;
    PyObject_GC_Track(a);
    return a;
}

/* The value of var (the scope context variable) or, where it has none, the
 * record riding on the request's ThreadSensitiveContext when that is
 * hopwatch's (under Django's ASGIHandler the record is not put in a variable
 * of its own: asgiref passes over every variable of the context on both sides
 * of every crossing). A new reference in *out (None when neither). The
 * reference is hopwatch._hotpath_py.scope_value. */
static int
scope_value(PyObject *var, PyObject **out)
{
    if (PyContextVar_Get(var, Py_None, out) < 0) {
        return -1;
    }
    if (*out != Py_None || g_tsc_var == NULL) {
        return 0;
    }
    PyObject *context = NULL;
    if (PyContextVar_Get(g_tsc_var, Py_None, &context) < 0) {
        return -1;
    }
    if ((PyObject *)Py_TYPE(context) == g_request_context_type) {
        PyObject *record;
        if (g_record_offset >= 0) {
            record = *(PyObject **)((char *)context + g_record_offset);
            if (record == NULL) {
                PyErr_SetObject(PyExc_AttributeError, s_record);
            }
            Py_XINCREF(record);
        }
        else {
            record = PyObject_GetAttr(context, s_record);
        }
        Py_DECREF(context);
        if (record == NULL) {
            return -1;
        }
        Py_SETREF(*out, record);
        return 0;
    }
    Py_DECREF(context);
    return 0;
}

/* The current scope and the hop whose code runs here (new references; None
 * for either when there is none), from the one context variable. */
static int
scope_and_hop(PyObject **scope, PyObject **hop)
{
    PyObject *v = NULL;
    if (scope_value(g_current_scope, &v) < 0) {
        return -1;
    }
    if (Py_IS_TYPE(v, &HopType)) {
        /* A hop that has finished (a task its code started outlives it): the
         * scope is that of the crossing its run was made in, if any. */
        HopObject *h = (HopObject *)v;
        while (h->resumed_ns && (h->scope == NULL || h->scope == Py_None) && h->parent != NULL &&
               Py_IS_TYPE(h->parent, &HopType)) {
            h = (HopObject *)h->parent;
        }
        PyObject *s = h->scope;
        *scope = Py_NewRef(s ? s : Py_None);
        *hop = v;
    }
    else {
        PyObject *h = PyObject_TypeCheck(v, &LedgerCoreType) ? ((LedgerCoreObject *)v)->outer_hop
                                                             : NULL;
        *hop = Py_NewRef(h ? h : Py_None);
        *scope = v;
    }
    return 0;
}

/* The id of the thread running here, as the recorder and logging read it
 * (threading.get_ident): the OS thread's, unless threading is monkey-patched. */
static unsigned long long
thread_ident(void)
{
    if (g_get_ident != NULL) {
        PyObject *id = PyObject_CallNoArgs(g_get_ident);
        if (id != NULL) {
            unsigned long long value = PyLong_AsUnsignedLongLong(id);
            Py_DECREF(id);
            if (!PyErr_Occurred()) {
                return value;
            }
        }
        PyErr_Clear();
    }
    return (unsigned long long)PyThread_get_thread_ident();
}

static PyTypeObject PatchType;

/* The first crossing of an adapter class whose thread_handler (found along its
 * MRO: own, borrowed) is not a Patch: adopt it (see g_plain_s2a). Cold: once a
 * class, or a declined thread_handler. An error is reported and the class
 * left alone; the hop goes on either way (without run figures if not adopted). */
static void
adopt_class(PyTypeObject *type, PyObject *own)
{
    if (own == g_declined || g_adopt == NULL || g_adopt == Py_None) {
        return;
    }
    Py_INCREF(own); /* adopt() replaces it in the class's dict */
    PyObject *r = PyObject_CallOneArg(g_adopt, (PyObject *)type);
    if (r == NULL) {
        report_error("SyncToAsync.__call__ (adopt)");
    }
    if (r != Py_None) { /* None: not installed, asked again at the next crossing */
        PyObject *now = _PyType_Lookup(type, s_thread_handler); /* borrowed */
        if (r == Py_True && now != NULL && Py_IS_TYPE(now, &PatchType)) {
            g_plain_s2a = type;
        }
        else {
            Py_XSETREF(g_declined, Py_NewRef(own));
        }
    }
    Py_XDECREF(r);
    Py_DECREF(own);
}

static void
s2a_start(HopAwaitableObject *a)
{
    /* Set up the hop; on any error, report it and pass through unrecorded. */
    PyObject *adapter = a->adapter;
    PyObject *target = NULL, *cause = NULL, *parent = NULL, *scope = NULL, *ts = NULL;
    HopObject *hop = NULL;
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed: the awaiting frame */
    if (frame != NULL) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        int flags = code->co_flags;
        Py_DECREF(code);
        if (!(flags & (AWAITING_FLAGS | CO_GENERATOR))) {
            /* Stepped by what drives the loop, not awaited by a frame: the hop's
             * coroutine is a task's own (gather); who awaited it is unknown. */
            frame = NULL;
        }
    }
    if (instance_attr(adapter, s_func, &target) <= 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_AttributeError, "func");
        }
        goto fail;
    }
    cause = attribute(adapter, target, frame);
    if (cause == NULL) {
        goto fail;
    }
    if (scope_and_hop(&scope, &parent) < 0) {
        goto fail;
    }
    if (instance_attr(adapter, s_thread_sensitive, &ts) < 0) {
        goto fail;
    }
    hop = hop_make(s_sync_to_async, cause, ts ? ts : Py_None, parent, scope);
    if (hop == NULL) {
        goto fail;
    }
    hop->adapter_id = (Py_ssize_t)(uintptr_t)adapter;
    if (ts == Py_False) {
        /* Which executor asgiref will use: the caller's, or the loop's pool. */
        PyObject *executor = NULL;
        if (instance_attr(adapter, s_executor, &executor) < 0) {
            goto fail;
        }
        hop->own_executor = executor != NULL && executor != Py_None;
        Py_XDECREF(executor);
    }
    if (Py_TYPE(adapter) != g_plain_s2a) {
        PyObject *own = _PyType_Lookup(Py_TYPE(adapter), s_thread_handler); /* borrowed */
        if (own == NULL || Py_IS_TYPE(own, &PatchType)) {
            g_plain_s2a = Py_TYPE(adapter);
        }
        else {
            adopt_class(Py_TYPE(adapter), own);
        }
    }
    a->hop = hop;
    a->state = ST_RUNNING;
    Py_CLEAR(a->adapter);
    Py_DECREF(target);
    Py_DECREF(cause);
    Py_DECREF(parent);
    Py_DECREF(scope);
    Py_XDECREF(ts);
    /* Taken last: hopwatch's own set-up stays outside the timed interval. */
    hop->called_ns = now_ns();
    return;
fail:
    report_error("SyncToAsync.__call__");
    Py_XDECREF(target);
    Py_XDECREF(cause);
    Py_XDECREF(parent);
    Py_XDECREF(scope);
    Py_XDECREF(ts);
    Py_XDECREF(hop);
    Py_CLEAR(a->adapter);
    a->state = ST_PASSTHROUGH;
}

/* Whether this thread runs the loop the async_to_sync expected (so that loop
 * is the running one: a thread runs one loop at a time), known without
 * asking asyncio, from the thread asyncio's BaseEventLoop records in
 * `_thread_id` while it runs. Python 3.11's get_running_loop() makes a
 * getpid() system call on every call (its fork check; 3.12 dropped it), some
 * 0.4 µs of an async_to_sync's 35 here (bench.hops, pinned: +5.4% -> +4.0%
 * of the bare hop). 1: the running loop is the expected one (not a new
 * loop); 0 (not known: a loop of another kind, no loop expected, another
 * thread, 3.12 and later) leaves it to get_running_loop(). */
static inline int
runs_expected_loop(HopObject *hop)
{
#if PY_VERSION_HEX < 0x030C0000
    PyObject *loop = hop->expected_loop;
    if (loop == Py_None) {
        return 0;
    }
    PyObject *owner = NULL;
    if (instance_attr(loop, s_thread_id, &owner) <= 0) {
        PyErr_Clear();
        return 0;
    }
    unsigned long long ident = PyLong_CheckExact(owner) ? PyLong_AsUnsignedLongLong(owner) : 0;
    Py_DECREF(owner);
    if (ident == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return ident != 0 && ident == hop->thread_id; /* new_loop stays 0, as made */
#else
    (void)hop;
    return 0;
#endif
}

/* CPython's context object (pycore_context.h, the same in 3.11, 3.12 and
 * 3.13): only ctx_vars is read here, the immutable mapping of its variables,
 * replaced by a new one whenever a variable is set in it. NULL (not known: a
 * later CPython) has hand_back compare every variable. */
typedef struct {
    PyObject_HEAD
    PyObject *ctx_prev;
    PyObject *ctx_vars;
} ContextLayout;

static inline PyObject *
context_vars(PyObject *ctx)
{
#if PY_VERSION_HEX < 0x030E0000
    return ((ContextLayout *)ctx)->ctx_vars;
#else
    (void)ctx;
    return NULL;
#endif
}

#if PY_VERSION_HEX < 0x030E0000
/* The `set` method of a context's mapping (CPython's Python/hamt.c,
 * hamt_py_set: METH_VARARGS, (key, value), gives a new mapping with the key
 * set; the same from 3.7 to 3.13), looked up once by find_map_set. With it,
 * run_context makes the hop's context as the copy of the task's with the
 * copy's mapping replaced by one with the scope variable set, before anyone
 * entered the copy: no enter and exit around PyContextVar_Set, no lookup of
 * the variable's old value and no Token, which PyContextVar_Set makes and
 * run_context dropped. NULL when not found: run_context sets the variable
 * through PyContextVar_Set. */
static PyCFunction g_map_set = NULL;
/* Its arguments: a 2-tuple made once and reused, untracked, its items NULL
 * but during the call (which unpacks them before it allocates, so a
 * collection during the call that runs Python code, and a hop made there,
 * does not disturb it). */
static PyObject *g_map_set_args = NULL;
#define MAP_SET_FOUND (g_map_set != NULL)
#else
#define MAP_SET_FOUND 0
#endif

static void
find_map_set(void)
{
#if PY_VERSION_HEX < 0x030E0000
    PyObject *ctx = PyContext_New();
    if (ctx == NULL) {
        PyErr_Clear();
        return;
    }
    PyTypeObject *map_type = Py_TYPE(context_vars(ctx));
    PyCFunction set = NULL;
    if (strcmp(map_type->tp_name, "hamt") == 0 && map_type->tp_methods != NULL) {
        for (PyMethodDef *m = map_type->tp_methods; m->ml_name != NULL; m++) {
            if (strcmp(m->ml_name, "set") == 0 && m->ml_flags == METH_VARARGS) {
                set = m->ml_meth;
                break;
            }
        }
    }
    PyObject *args = set != NULL ? PyTuple_New(2) : NULL;
    PyObject *probe = NULL;
    if (args != NULL) {
        /* One try: a mapping of the same type with the key set. */
        PyObject *key = PyContextVar_New("hopwatch.probe", NULL);
        if (key != NULL) {
            PyTuple_SET_ITEM(args, 0, key);
            PyTuple_SET_ITEM(args, 1, Py_NewRef(Py_None));
            probe = set(context_vars(ctx), args);
            Py_CLEAR(args); /* the key and None with it */
        }
    }
    if (probe != NULL && Py_IS_TYPE(probe, map_type) && PyObject_Length(probe) == 1) {
        g_map_set_args = PyTuple_New(2);
        if (g_map_set_args != NULL) {
            PyObject_GC_UnTrack(g_map_set_args);
            g_map_set = set;
        }
    }
    Py_XDECREF(probe);
    Py_XDECREF(args);
    Py_DECREF(ctx);
    PyErr_Clear();
#endif
}

/* Sets the scope variable to the hop in ctx, a copy no one has entered yet:
 * by replacing the copy's mapping with one with the variable set (see
 * find_map_set), else by entering the copy and PyContextVar_Set. */
static int
set_in_copy(PyObject *ctx, HopObject *hop)
{
#if PY_VERSION_HEX < 0x030E0000
    if (g_map_set != NULL) {
        ContextLayout *c = (ContextLayout *)ctx;
        PyObject *args = g_map_set_args;
        PyTuple_SET_ITEM(args, 0, g_current_scope); /* borrowed for the call */
        PyTuple_SET_ITEM(args, 1, (PyObject *)hop);
        PyObject *vars = g_map_set(c->ctx_vars, args);
        PyTuple_SET_ITEM(args, 0, NULL);
        PyTuple_SET_ITEM(args, 1, NULL);
        if (vars == NULL) {
            return -1;
        }
        Py_SETREF(c->ctx_vars, vars);
        return 0;
    }
#endif
    if (PyContext_Enter(ctx) < 0) {
        return -1;
    }
    PyObject *token = PyContextVar_Set(g_current_scope, (PyObject *)hop);
    if (PyContext_Exit(ctx) < 0 || token == NULL) {
        Py_XDECREF(token);
        return -1;
    }
    Py_DECREF(token);
    return 0;
}

/* The async_to_sync's awaitable runs, on the loop, in a context of its own: a
 * copy of its task's with the hop as the scope variable's value, so a
 * crossing made in it, or in a task it starts (which copies it), finds its
 * parent. Setting the variable in the task's own context would have to be
 * undone before main_wrap copies that context back to the caller (a token
 * reset: a second new mapping, some 800 instructions a hop); this copy is
 * simply dropped. Every send, throw and close into the awaitable enters it
 * (send_in); what the awaitable's code set in it is handed back to the task's
 * context when it ends (hand_back), as if it had been set there. */
static int
run_context(HopAwaitableObject *a, HopObject *hop)
{
    PyObject *ctx = PyContext_CopyCurrent();
    if (ctx == NULL) {
        return -1;
    }
    if (set_in_copy(ctx, hop) < 0) {
        Py_DECREF(ctx);
        return -1;
    }
    a->vars = Py_XNewRef(context_vars(ctx)); /* held: its address is compared */
    a->ctx = ctx;
    return 0;
}

/* The task's context gets what the awaitable's code changed in its own (every
 * variable but the scope's whose value is not the very object the task's
 * holds), so it ends as if the code had run in it; then the copy is dropped.
 * Nothing to do, and nothing read, when the copy's variables are still the
 * mapping run_context made. Called in the task's context, with no exception
 * set; hopwatch's own errors are reported. */
static void
hand_back(HopAwaitableObject *a)
{
    PyObject *ctx = a->ctx, *vars = a->vars;
    a->ctx = NULL;
    a->vars = NULL;
    if (vars == NULL || context_vars(ctx) != vars) {
        PyObject *it = PyObject_GetIter(ctx);
        PyObject *var;
        while (it != NULL && (var = PyIter_Next(it)) != NULL) {
            PyObject *value = var == g_current_scope ? NULL : PyObject_GetItem(ctx, var);
            PyObject *now = NULL;
            /* ctx, private, as the default: a variable the task's context lacks
             * reads as that, not as the variable's own default (which the code
             * may have set). */
            if (value != NULL && PyContextVar_Get(var, ctx, &now) == 0 && now != value) {
                PyObject *token = PyContextVar_Set(var, value);
                Py_XDECREF(token);
            }
            Py_XDECREF(now);
            Py_XDECREF(value);
            Py_DECREF(var);
        }
        Py_XDECREF(it);
        if (PyErr_Occurred()) {
            report_error("AsyncToSync.main_wrap (context)");
        }
    }
    Py_XDECREF(vars);
    Py_DECREF(ctx);
}

static void
main_start(HopAwaitableObject *a)
{
    HopObject *hop = a->hop;
    if (a->kind == KIND_CODE) {
        /* The async_to_sync's own awaitable, first driven by main_wrap's await
         * on the loop: it runs with the hop as the scope variable's value, so
         * a crossing made in it, or in a task it starts, finds its parent. */
        PyObject *inner = a->inner;
        if (!PyCoro_CheckExact(inner) && !Py_IS_TYPE(inner, &HopAwaitableType)) {
            /* Any other awaitable: awaited by an `async def`, as main_wrap's
             * own await would (its __await__ is called now, as it would be). */
            PyObject *coro = PyObject_CallOneArg(g_awaiting, inner);
            if (coro == NULL) {
                goto fail;
            }
            Py_SETREF(a->inner, coro);
        }
        if (run_context(a, hop) < 0) {
            goto fail;
        }
    }
    hop->thread_id = thread_ident();
    if (!runs_expected_loop(hop)) {
        PyObject *loop = PyObject_CallNoArgs(g_get_running_loop);
        if (loop == NULL) {
            PyErr_Clear();
        }
        else {
            hop->new_loop = (loop != hop->expected_loop);
            Py_DECREF(loop);
            if (hop->new_loop) {
                /* A new loop: in a thread started for it, unless an earlier one
                 * ran here (asgiref 3.13's AsyncSingleThreadContext keeps it). Its
                 * id tells no such thing: a thread that ended leaves its id to the
                 * next one started. */
                hop->new_thread = !tl_loop_thread;
                tl_loop_thread = 1;
            }
        }
    }
    a->state = ST_RUNNING;
    hop->started_ns = now_ns();
    return;
fail:
    report_error("AsyncToSync.main_wrap");
    a->state = ST_PASSTHROUGH;
}

/* The wrapped coroutine finished (status: 0 returned, 1 raised). Called with
 * the exception (if any) still set; leaves it set. */
static void
awaitable_end(HopAwaitableObject *a, int raised)
{
    long long t = now_ns(); /* first: what follows is hopwatch's own cost */
    HopObject *hop = a->hop;
    a->state = ST_DONE;
    if (hop == NULL) {
        return;
    }
    /* An exception in flight (the coroutine raised, or a throw() ended in
     * StopIteration) is kept aside around hopwatch's own work; a hop that
     * returned has none, and skips the fetch and the restore (about 70
     * instructions). hopwatch's own errors below are cleared or reported
     * where they occur. */
    saved_exc s;
    int in_flight = PyErr_Occurred() != NULL;
    if (a->kind != KIND_S2A) {
        hop->ended_ns = t;
        Py_CLEAR(a->hop);
        if (a->ctx != NULL) {
            if (in_flight) {
                save_exc(&s);
            }
            hand_back(a);
            if (in_flight) {
                restore_exc(&s);
            }
        }
        return;
    }
    hop->resumed_ns = t;
    if (raised) {
        PyObject *outcome = s_error;
        if (PyErr_ExceptionMatches(g_cancelled)) {
            outcome = s_cancelled;
        }
        Py_SETREF(hop->outcome, Py_NewRef(outcome));
    }
    if (in_flight) {
        save_exc(&s);
    }
    hop->adapter_id = 0;
    if (finish_hop_impl(hop) < 0) {
        report_error("SyncToAsync.__call__ (finish)");
    }
    Py_CLEAR(a->hop);
    if (in_flight) {
        restore_exc(&s);
    }
}

static int
awaitable_gone(HopAwaitableObject *a)
{
    /* Only after the garbage collector broke a cycle through it. */
    if (a->inner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "hopwatch: the wrapped coroutine is gone");
        return 1;
    }
    return 0;
}

/* Enters the awaitable's own context when it has one (run_context) for one of
 * its steps (send, throw, close); returns it (borrowed) for leave_own, or
 * NULL. An enter refused means the context is entered already: only a step
 * taken inside a step of its own, which the coroutine refuses as it would
 * without hopwatch; that step goes ahead outside it. */
static inline PyObject *
enter_own(HopAwaitableObject *a)
{
    PyObject *ctx = a->ctx;
    if (ctx != NULL && PyContext_Enter(ctx) < 0) {
        PyErr_Clear();
        return NULL;
    }
    return ctx;
}

static inline void
leave_own(PyObject *ctx)
{
    if (ctx != NULL) {
        (void)PyContext_Exit(ctx); /* cannot fail: contexts are entered and exited in turn */
    }
}

/* A step of the awaitable, in its own context when it has one. */
static PySendResult
send_in(HopAwaitableObject *a, PyObject *arg, PyObject **result)
{
    PyObject *ctx = enter_own(a);
    PySendResult r = PyIter_Send(a->inner, arg, result);
    leave_own(ctx);
    return r;
}

static PySendResult
HopAwaitable_am_send(HopAwaitableObject *a, PyObject *arg, PyObject **result)
{
    if (awaitable_gone(a)) {
        *result = NULL;
        return PYGEN_ERROR;
    }
    if (a->state == ST_FRESH) {
        if (a->kind == KIND_S2A) {
            if (g_active) {
                s2a_start(a);
            }
            else {
                a->state = ST_PASSTHROUGH;
            }
            if (a->state == ST_RUNNING) {
                /* asgiref's first step binds thread_handler (see tl_pending). */
                HopObject *outer = tl_pending;
                tl_pending = a->hop;
                PySendResult r = PyIter_Send(a->inner, arg, result);
                tl_pending = outer;
                if (r != PYGEN_NEXT) {
                    awaitable_end(a, r == PYGEN_ERROR);
                }
                return r;
            }
        }
        else {
            main_start(a);
        }
    }
    PySendResult r = send_in(a, arg, result);
    if (r != PYGEN_NEXT && a->state == ST_RUNNING) {
        awaitable_end(a, r == PYGEN_ERROR);
    }
    return r;
}

static PyObject *
stop_iteration(PyObject *value)
{
    /* Raise StopIteration(value) the way generators do (value kept whole). */
    if (value == Py_None) {
        Py_DECREF(value);
        PyErr_SetNone(PyExc_StopIteration);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* From 3.12 on `await` takes a value out of a StopIteration from an
     * awaitable that is not a coroutine (SEND, through tp_iternext), so every
     * hop whose code returns something raises one. Made here as
     * StopIteration(value) makes it (args (value,), value; the rest NULL, as
     * tp_alloc leaves it), without the call of its type and its __init__'s
     * argument parsing; and raised as it is, unless an exception is being
     * handled, whose chaining (__context__) PyErr_SetObject does. */
    PyObject *handled = PyErr_GetHandledException();
    if (handled == NULL) {
        PyTypeObject *type = (PyTypeObject *)PyExc_StopIteration;
        PyStopIterationObject *e = (PyStopIterationObject *)type->tp_alloc(type, 0);
        PyObject *args = e != NULL ? PyTuple_Pack(1, value) : NULL;
        if (args == NULL) {
            Py_XDECREF(e);
            Py_DECREF(value);
            return NULL;
        }
        e->args = args;
        e->value = value; /* the reference taken over */
        PyErr_SetRaisedException((PyObject *)e);
        return NULL;
    }
    Py_DECREF(handled);
#endif
    PyObject *exc = PyObject_CallOneArg(PyExc_StopIteration, value);
    Py_DECREF(value);
    if (exc != NULL) {
        PyErr_SetObject(PyExc_StopIteration, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* An am_send's outcome as `send()` and `__next__()` give it. */
static PyObject *
sent(PySendResult r, PyObject *result)
{
    if (r == PYGEN_NEXT) {
        return result;
    }
    if (r == PYGEN_RETURN) {
        return stop_iteration(result);
    }
    return NULL;
}

/* An am_send's outcome as `__next__()` gives it: as `send()` does, except
 * that an end with None is NULL and no exception, which every reader of
 * tp_iternext takes for StopIteration() (next(), the `__next__` slot wrapper,
 * and from Python 3.12 on `await`'s SEND, which steps any awaitable that is
 * not a coroutine through tp_iternext, not am_send). An async_to_sync's code
 * on the loop ends so at every hop, and an ASGI handler at every request; a
 * StopIteration made and fetched again cost some 1,000 instructions on 3.13. */
static PyObject *
next_sent(PySendResult r, PyObject *result)
{
    if (r == PYGEN_RETURN && result == Py_None) {
        Py_DECREF(result);
        return NULL;
    }
    return sent(r, result);
}

static PyObject *
HopAwaitable_iternext(HopAwaitableObject *a)
{
    PyObject *result = NULL;
    PySendResult r = HopAwaitable_am_send(a, Py_None, &result); /* before `result` is read */
    return next_sent(r, result);
}

static PyObject *
HopAwaitable_send(HopAwaitableObject *a, PyObject *arg)
{
    PyObject *result = NULL;
    PySendResult r = HopAwaitable_am_send(a, arg, &result); /* before `result` is read */
    return sent(r, result);
}

static PyObject *
HopAwaitable_throw(HopAwaitableObject *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (awaitable_gone(a)) {
        return NULL;
    }
    if (a->state == ST_FRESH) {
        /* Thrown into before it ran (cancelled before it started): nothing
         * was crossed; the wrapped coroutine raises it at its start. */
        a->state = ST_PASSTHROUGH;
    }
    PyObject *throw = PyObject_GetAttr(a->inner, s_throw);
    if (throw == NULL) {
        return NULL;
    }
    PyObject *ctx = enter_own(a);
    PyObject *res = PyObject_Vectorcall(throw, args, nargs, NULL);
    leave_own(ctx);
    Py_DECREF(throw);
    if (res == NULL && a->state == ST_RUNNING) {
        awaitable_end(a, !PyErr_ExceptionMatches(PyExc_StopIteration));
    }
    return res;
}

static PyObject *
HopAwaitable_close(HopAwaitableObject *a, PyObject *unused)
{
    (void)unused;
    if (a->inner == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *close = PyObject_GetAttr(a->inner, s_close);
    if (close == NULL) {
        return NULL;
    }
    PyObject *ctx = enter_own(a);
    PyObject *res = PyObject_CallNoArgs(close);
    leave_own(ctx);
    Py_DECREF(close);
    if (a->state == ST_RUNNING) {
        if (res == NULL) {
            awaitable_end(a, 1);
        }
        else {
            /* Closed while it waited: like GeneratorExit through a coroutine. */
            PyErr_SetNone(PyExc_GeneratorExit);
            awaitable_end(a, 1);
            PyErr_Clear();
        }
    }
    else if (a->state == ST_FRESH) {
        a->state = ST_DONE;
    }
    return res;
}

static PyObject *
HopAwaitable_await(HopAwaitableObject *a)
{
    return Py_NewRef(a);
}

/* An attribute of a wrapper awaitable, else the wrapped one's (cr_frame,
 * cr_code, __name__, __qualname__, ...). */
static PyObject *
forwarded_attr(PyObject *self, PyObject *inner, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return r;
    }
    if (inner == NULL) {
        return NULL;
    }
    PyErr_Clear();
    return PyObject_GetAttr(inner, name);
}

static PyObject *
HopAwaitable_getattro(HopAwaitableObject *a, PyObject *name)
{
    return forwarded_attr((PyObject *)a, a->inner, name);
}

static PyObject *
HopAwaitable_repr(HopAwaitableObject *a)
{
    if (a->inner == NULL) {
        return PyUnicode_FromString("<hopwatch awaitable (cleared)>");
    }
    return PyObject_Repr(a->inner);
}

static void
HopAwaitable_finalize(HopAwaitableObject *a)
{
    if (a->state != ST_RUNNING) {
        return;
    }
    /* Dropped while it waited (its awaiting coroutine was collected): close
     * it as a coroutine would be, so the hop is ended and accounted. */
    saved_exc s;
    save_exc(&s);
    PyObject *r = HopAwaitable_close(a, NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)a);
    }
    Py_XDECREF(r);
    restore_exc(&s);
}

static int
HopAwaitable_traverse(HopAwaitableObject *a, visitproc visit, void *arg)
{
    Py_VISIT(a->inner);
    Py_VISIT(a->adapter);
    Py_VISIT(a->hop);
    Py_VISIT(a->ctx);
    Py_VISIT(a->vars);
    return 0;
}

static int
HopAwaitable_clear(HopAwaitableObject *a)
{
    Py_CLEAR(a->inner);
    Py_CLEAR(a->adapter);
    Py_CLEAR(a->hop);
    Py_CLEAR(a->ctx);
    Py_CLEAR(a->vars);
    return 0;
}

static void
HopAwaitable_dealloc(HopAwaitableObject *a)
{
    /* Only a running one has anything to finalize (HopAwaitable_finalize):
     * the usual one, finished, skips the finalizer's call (about 40
     * instructions a hop). */
    if (a->state == ST_RUNNING && PyObject_CallFinalizerFromDealloc((PyObject *)a) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(a);
    if (a->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)a);
    }
    HopAwaitable_clear(a);
#ifndef Py_GIL_DISABLED
    /* Kept for the next hop unless the collector finalized it (its header
     * then carries that mark, which a new object must not: it would never be
     * finalized). HopAwaitableType has no subclasses: every one is this size. */
    if (g_free_awaitables_n < FREE_AWAITABLES && !PyObject_GC_IsFinalized((PyObject *)a)) {
        g_free_awaitables[g_free_awaitables_n++] = a;
        return;
    }
#endif
    PyObject_GC_Del(a);
}

static PyAsyncMethods HopAwaitable_as_async = {
    .am_await = (unaryfunc)HopAwaitable_await,
    .am_send = (sendfunc)HopAwaitable_am_send,
};

static PyMethodDef HopAwaitable_methods[] = {
    {"send", (PyCFunction)HopAwaitable_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))HopAwaitable_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)HopAwaitable_close, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject HopAwaitableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.HopAwaitable",
    .tp_basicsize = sizeof(HopAwaitableObject),
    .tp_weaklistoffset = offsetof(HopAwaitableObject, weakreflist),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "asgiref's coroutine, timed by hopwatch (everything else is the coroutine's).",
    .tp_dealloc = (destructor)HopAwaitable_dealloc,
    .tp_traverse = (traverseproc)HopAwaitable_traverse,
    .tp_clear = (inquiry)HopAwaitable_clear,
    .tp_finalize = (destructor)HopAwaitable_finalize,
    .tp_as_async = &HopAwaitable_as_async,
    .tp_iter = PyObject_SelfIter, /* what __await__ returns: `yield from` takes it */
    .tp_iternext = (iternextfunc)HopAwaitable_iternext,
    .tp_methods = HopAwaitable_methods,
    .tp_getattro = (getattrofunc)HopAwaitable_getattro,
    .tp_repr = (reprfunc)HopAwaitable_repr,
};

/* ------------------------------------------------------------------ Then */

/* then(awaitable, fn, a, b, start=None): awaits `awaitable` and, once it has
 * ended (returned, raised, been closed), calls fn(a, b, result) -- result None
 * unless it returned. With `start`, a = start(a, b) first, when it is first
 * driven (in the awaiting task's context), and no fn if that gave None. What
 *
 *     async def then(awaitable, fn, a, b, start=None):
 *         if start is not None:
 *             a = start(a, b)
 *             if a is None:
 *                 return await awaitable
 *         result = None
 *         try:
 *             result = await awaitable
 *             return result
 *         finally:
 *             fn(a, b, result)
 *
 * does (the pure-Python path's), without a Python frame: an awaitable of the
 * request's chain is resumed and suspended once per crossing of the request,
 * and a frame in it costs each of those passes. fn and start must not raise
 * (hopwatch's own, which report their errors); if one does, its error is
 * reported and the awaitable's outcome is left as it was (and a failed start
 * means no fn). As with the coroutine, neither is called for an awaitable
 * that never started. */

typedef struct {
    PyObject_HEAD
    PyObject *inner;
    PyObject *fn;
    PyObject *a;
    PyObject *b;
    PyObject *start;
    PyObject *weakreflist; /* the coroutine it stands for can be weakly referenced */
    int state;
} ThenObject;

static PyTypeObject ThenType;

static void
then_end(ThenObject *t, PyObject *result)
{
    /* Leaves any exception that is set as it is. */
    t->state = ST_DONE;
    PyObject *fn = t->fn;
    if (fn == NULL) {
        return;
    }
    saved_exc s;
    save_exc(&s);
    PyObject *args[3] = {t->a, t->b, result ? result : Py_None};
    PyObject *r = PyObject_Vectorcall(fn, args, 3, NULL);
    if (r == NULL) {
        report_error("then (callback)");
    }
    Py_XDECREF(r);
    t->fn = NULL;
    Py_CLEAR(t->a);
    Py_CLEAR(t->b);
    Py_DECREF(fn);
    restore_exc(&s);
}

static PySendResult
Then_am_send(ThenObject *t, PyObject *arg, PyObject **result)
{
    if (t->inner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "hopwatch: the wrapped awaitable is gone");
        *result = NULL;
        return PYGEN_ERROR;
    }
    if (t->state == ST_FRESH) {
        t->state = ST_RUNNING;
        PyObject *start = t->start;
        if (start != NULL) {
            t->start = NULL;
            PyObject *args[2] = {t->a, t->b};
            PyObject *state = PyObject_Vectorcall(start, args, 2, NULL);
            Py_DECREF(start);
            if (state == NULL) {
                report_error("then (start)");
            }
            if (state == NULL || state == Py_None) {
                Py_XDECREF(state);
                Py_CLEAR(t->fn); /* nothing to end */
            }
            else {
                Py_SETREF(t->a, state);
            }
        }
    }
    PySendResult r = PyIter_Send(t->inner, arg, result);
    if (r != PYGEN_NEXT && t->state == ST_RUNNING) {
        then_end(t, r == PYGEN_RETURN ? *result : NULL);
    }
    return r;
}

static PyObject *
Then_iternext(ThenObject *t)
{
    PyObject *result = NULL;
    PySendResult r = Then_am_send(t, Py_None, &result); /* before `result` is read */
    return next_sent(r, result);
}

static PyObject *
Then_send(ThenObject *t, PyObject *arg)
{
    PyObject *result = NULL;
    PySendResult r = Then_am_send(t, arg, &result); /* before `result` is read */
    return sent(r, result);
}

static PyObject *
Then_throw(ThenObject *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (t->inner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "hopwatch: the wrapped awaitable is gone");
        return NULL;
    }
    if (t->state == ST_FRESH) {
        /* Thrown into before it started: a coroutine raises it at its start,
         * before its try block. */
        t->state = ST_DONE;
    }
    PyObject *throw = PyObject_GetAttr(t->inner, s_throw);
    if (throw == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_Vectorcall(throw, args, nargs, NULL);
    Py_DECREF(throw);
    if (res == NULL && t->state == ST_RUNNING) {
        PyObject *value = NULL;
        if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            /* It returned: its value, and the StopIteration left to raise. */
            saved_exc s;
            save_exc(&s);
#if PY_VERSION_HEX >= 0x030C0000
            PyObject *stop = s.exc;
#else
            PyErr_NormalizeException(&s.type, &s.value, &s.tb);
            PyObject *stop = s.value;
#endif
            value = stop ? PyObject_GetAttrString(stop, "value") : NULL;
            if (value == NULL) {
                PyErr_Clear();
            }
            restore_exc(&s);
        }
        then_end(t, value);
        Py_XDECREF(value);
    }
    return res;
}

static PyObject *
Then_close(ThenObject *t, PyObject *unused)
{
    (void)unused;
    if (t->inner == NULL || t->state == ST_DONE) {
        Py_RETURN_NONE;
    }
    int fresh = t->state == ST_FRESH;
    if (fresh) {
        /* Never started: no start, no fn; but the awaitable is closed, as the
         * caller's close() would have closed it without hopwatch (left alone,
         * Django's coroutine said "never awaited"). */
        t->state = ST_DONE;
    }
    PyObject *close = PyObject_GetAttr(t->inner, s_close);
    if (close == NULL) {
        if (fresh && PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear(); /* an iterator with no close(): nothing to close */
            Py_RETURN_NONE;
        }
        return NULL;
    }
    PyObject *res = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (!fresh) {
        then_end(t, NULL);
    }
    return res;
}

static PyObject *
Then_await(ThenObject *t)
{
    return Py_NewRef(t);
}

static PyObject *
Then_getattro(ThenObject *t, PyObject *name)
{
    return forwarded_attr((PyObject *)t, t->inner, name);
}

static PyObject *
Then_repr(ThenObject *t)
{
    if (t->inner == NULL) {
        return PyUnicode_FromString("<hopwatch then (cleared)>");
    }
    return PyObject_Repr(t->inner);
}

static void
Then_finalize(ThenObject *t)
{
    if (t->state != ST_RUNNING) {
        return;
    }
    /* Dropped while it waited: closed, as a coroutine's finalizer does. */
    saved_exc s;
    save_exc(&s);
    PyObject *r = Then_close(t, NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_XDECREF(r);
    restore_exc(&s);
}

static int
Then_traverse(ThenObject *t, visitproc visit, void *arg)
{
    Py_VISIT(t->inner);
    Py_VISIT(t->fn);
    Py_VISIT(t->a);
    Py_VISIT(t->b);
    Py_VISIT(t->start);
    return 0;
}

static int
Then_clear(ThenObject *t)
{
    Py_CLEAR(t->inner);
    Py_CLEAR(t->fn);
    Py_CLEAR(t->a);
    Py_CLEAR(t->b);
    Py_CLEAR(t->start);
    return 0;
}

static void
Then_dealloc(ThenObject *t)
{
    /* As HopAwaitable_dealloc: only a running one has anything to finalize. */
    if (t->state == ST_RUNNING && PyObject_CallFinalizerFromDealloc((PyObject *)t) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(t);
    if (t->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)t);
    }
    Then_clear(t);
    PyObject_GC_Del(t);
}

static PyAsyncMethods Then_as_async = {
    .am_await = (unaryfunc)Then_await,
    .am_send = (sendfunc)Then_am_send,
};

static PyMethodDef Then_methods[] = {
    {"send", (PyCFunction)Then_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))Then_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)Then_close, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject ThenType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.Then",
    .tp_basicsize = sizeof(ThenObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An awaitable, then hopwatch's callback (everything else is the awaitable's).",
    .tp_dealloc = (destructor)Then_dealloc,
    .tp_weaklistoffset = offsetof(ThenObject, weakreflist),
    .tp_traverse = (traverseproc)Then_traverse,
    .tp_clear = (inquiry)Then_clear,
    .tp_finalize = (destructor)Then_finalize,
    .tp_as_async = &Then_as_async,
    .tp_iter = PyObject_SelfIter, /* what __await__ returns: `yield from` takes it */
    .tp_iternext = (iternextfunc)Then_iternext,
    .tp_methods = Then_methods,
    .tp_getattro = (getattrofunc)Then_getattro,
    .tp_repr = (reprfunc)Then_repr,
};

static PyObject *
py_then(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "then(awaitable, fn, a, b, start=None)");
        return NULL;
    }
    PyObject *inner = args[0];
    if (!PyCoro_CheckExact(inner)) {
        /* Any other awaitable: its __await__ iterator, as `await` takes it. */
        PyAsyncMethods *am = Py_TYPE(inner)->tp_as_async;
        if (am == NULL || am->am_await == NULL) {
            PyErr_Format(PyExc_TypeError, "object %.100s can't be used in 'await' expression",
                         Py_TYPE(inner)->tp_name);
            return NULL;
        }
        inner = am->am_await(inner);
        if (inner == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(inner);
    }
    ThenObject *t = PyObject_GC_New(ThenObject, &ThenType);
    if (t == NULL) {
        Py_DECREF(inner);
        return NULL;
    }
    t->inner = inner;
    t->fn = Py_NewRef(args[1]);
    t->a = Py_NewRef(args[2]);
    t->b = Py_NewRef(args[3]);
    t->start = (nargs == 5 && args[4] != Py_None) ? Py_NewRef(args[4]) : NULL;
    t->weakreflist = NULL;
    t->state = ST_FRESH;
    PyObject_GC_Track(t);
    return (PyObject *)t;
}

/* ------------------------------------------------------------ the patches */

/* One type for the four class attributes hopwatch installs: a method
 * descriptor (no bound-method object is made when asgiref calls it) that
 * calls the original function it replaced. */

#define P_S2A_CALL 1
#define P_A2S_CALL 2
#define P_THREAD_HANDLER 3
#define P_MAIN_WRAP 4

typedef struct {
    PyObject_HEAD
    PyObject *original;
    PyObject *dict;
    vectorcallfunc vectorcall;
    int which;
} PatchObject;

static PyTypeObject PatchType;

static PyObject *
patch_passthrough(PatchObject *p, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyObject_Vectorcall(p->original, args, nargsf, kwnames);
}

static PyObject *
s2a_call(PatchObject *p, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *inner = PyObject_Vectorcall(p->original, args, nargsf, kwnames);
    if (inner == NULL || !g_active || nargs < 1) {
        return inner;
    }
    HopAwaitableObject *a = awaitable_make(KIND_S2A, inner, args[0], NULL);
    Py_DECREF(inner);
    return (PyObject *)a;
}

/* name on a threading.local, read from this thread's __dict__: a missing name
 * raises no AttributeError inside (getattr's default path formats its message,
 * about 800 instructions, for a thread that has never run a sync_to_async). */
static int
thread_local_attr(PyObject *local, PyObject *name, PyObject **result)
{
    PyObject *dict = PyObject_GetAttr(local, s_dict);
    if (dict == NULL) {
        PyErr_Clear();
        return lookup_attr(local, name, result);
    }
    if (!PyDict_CheckExact(dict)) {
        Py_DECREF(dict);
        return lookup_attr(local, name, result);
    }
    PyObject *value = PyDict_GetItemWithError(dict, name);
    Py_XINCREF(value);
    Py_DECREF(dict);
    *result = value;
    return value != NULL ? 1 : (PyErr_Occurred() ? -1 : 0);
}

static PyObject *
expected_loop(PyObject *adapter)
{
    /* The running loop asgiref will schedule onto, or None for a new loop
     * (the same decision AsyncToSync.__call__ makes, in every version). */
    PyObject *value = NULL;
    if (instance_attr(adapter, s_force_new_loop, &value) < 0) {
        return NULL;
    }
    if (value != NULL) {
        int truth = PyObject_IsTrue(value);
        Py_DECREF(value);
        if (truth < 0) {
            return NULL;
        }
        if (truth) {
            Py_RETURN_NONE;
        }
    }
    if (g_loop_on_adapter) {
        /* asgiref < 3.12 keeps the loop on the adapter (an instance attribute) */
        PyObject *cached = NULL;
        int has_loop = instance_value(adapter, s_main_event_loop, &cached);
        if (has_loop != 0) {
            return has_loop > 0 ? cached : NULL;
        }
    }
    if (tl_running != NULL && tl_loop != NULL) {
        /* Inside thread_handler in this thread, which set the threadlocal
         * read below to its loop argument: the same answer, without two
         * attribute reads of a threading.local. */
        return Py_NewRef(tl_loop);
    }
    PyObject *pid = NULL;
    if (thread_local_attr(g_threadlocal, s_main_event_loop_pid, &pid) < 0) {
        return NULL;
    }
    if (pid == NULL) {
        Py_RETURN_NONE;
    }
    long value_pid = PyLong_AsLong(pid);
    Py_DECREF(pid);
    if (value_pid == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (value_pid != (long)getpid()) {
        Py_RETURN_NONE;
    }
    PyObject *loop = NULL;
    if (thread_local_attr(g_threadlocal, s_main_event_loop, &loop) < 0) {
        return NULL;
    }
    return loop ? loop : Py_NewRef(Py_None);
}

static PyObject *
a2s_call(PatchObject *p, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (!g_active || nargs < 1) {
        return PyObject_Vectorcall(p->original, args, nargsf, kwnames);
    }
    PyObject *adapter = args[0];
    PyObject *target = NULL, *cause = NULL, *parent = NULL, *scope = NULL, *token = NULL;
    HopObject *hop = NULL;
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed: the caller's frame */
    if (instance_attr(adapter, s_awaitable, &target) <= 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_AttributeError, "awaitable");
        }
        goto fail;
    }
    cause = attribute(adapter, target, frame);
    if (cause == NULL) {
        goto fail;
    }
    if (scope_and_hop(&scope, &parent) < 0) {
        goto fail;
    }
    if (tl_running != NULL) {
        /* Inside a sync_to_async's code in this thread: that hop holds us. */
        Py_SETREF(parent, Py_NewRef((PyObject *)tl_running));
    }
    hop = hop_make(s_async_to_sync, cause, Py_None, parent, scope);
    if (hop == NULL) {
        goto fail;
    }
    hop->adapter_id = (Py_ssize_t)(uintptr_t)adapter;
    PyObject *loop = expected_loop(adapter);
    if (loop == NULL) {
        goto fail;
    }
    Py_SETREF(hop->expected_loop, loop);
    if (g_awaitable_index < 0) {
        /* asgiref 3.8: the loop's code finds its hop in the context it copies */
        token = PyContextVar_Set(g_current_scope, (PyObject *)hop);
        if (token == NULL) {
            goto fail;
        }
    }
    Py_DECREF(target);
    Py_DECREF(cause);
    Py_DECREF(parent);
    Py_DECREF(scope);

    HopObject *outer_a2s = tl_a2s;
    tl_a2s = hop;
    hop->called_ns = now_ns();
    PyObject *result = PyObject_Vectorcall(p->original, args, nargsf, kwnames);
    hop->resumed_ns = now_ns();
    tl_a2s = outer_a2s;

    saved_exc s; /* kept aside only when the call raised (see awaitable_end) */
    int refused = 0;
    if (result == NULL) {
        PyObject *outcome = PyErr_ExceptionMatches(g_cancelled) ? s_cancelled : s_error;
        Py_SETREF(hop->outcome, Py_NewRef(outcome));
        save_exc(&s);
        if (!hop->started_ns) {
            /* Called on a thread whose event loop runs: asgiref refused it before
             * anything crossed (its first check), so it is no crossing. */
            PyObject *loop = PyObject_CallNoArgs(g_get_running_loop);
            refused = loop != NULL && loop != Py_None;
            Py_XDECREF(loop);
            PyErr_Clear();
        }
    }
    Py_SETREF(hop->expected_loop, Py_NewRef(Py_None)); /* keep no loop alive */
    hop->adapter_id = 0;
    if (token != NULL) {
        if (PyContextVar_Reset(g_current_scope, token) < 0) {
            PyErr_Clear();
        }
        Py_DECREF(token);
    }
    if (refused) {
        Py_SETREF(hop->scope, Py_NewRef(Py_None));
    }
    else if (finish_hop_impl(hop) < 0) {
        report_error("AsyncToSync.__call__ (finish)");
    }
    Py_DECREF(hop);
    if (result == NULL) {
        restore_exc(&s);
    }
    return result;

fail:
    report_error("AsyncToSync.__call__");
    Py_XDECREF(target);
    Py_XDECREF(cause);
    Py_XDECREF(parent);
    Py_XDECREF(scope);
    Py_XDECREF(hop);
    return PyObject_Vectorcall(p->original, args, nargsf, kwnames);
}

/* The worker side of a sync_to_async: asgiref binds ``self.thread_handler``
 * in its coroutine's first step, in the caller's thread, while tl_pending is
 * the hop being made (HopAwaitable_am_send); Patch_descr_get then returns a
 * BoundHandler carrying that hop, which the executor calls in the worker.
 * Any other binding gets a plain bound method (the original, untimed): an
 * adopted subclass's super().thread_handler, bound in the worker thread,
 * among them (see g_plain_s2a). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *original; /* asgiref's thread_handler function (or an adopted subclass's) */
    PyObject *self;     /* the SyncToAsync instance */
    HopObject *hop;
} BoundHandlerObject;

static PyTypeObject BoundHandlerType;

static PyObject *
run_thread_hook(BoundHandlerObject *b, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    /* A registered per-hop hook (profiling) runs the handler itself. */
    PyObject *handler = PyMethod_New(b->original, b->self);
    PyObject *rest = PyTuple_New(nargs);
    PyObject *kwargs = PyDict_New();
    PyObject *result = NULL;
    if (handler && rest && kwargs) {
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(rest, i, Py_NewRef(args[i]));
        }
        if (kwnames) {
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
                PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]);
            }
        }
        result = PyObject_CallFunctionObjArgs(g_thread_hook, (PyObject *)b->hop, handler, rest,
                                              kwargs, NULL);
    }
    Py_XDECREF(handler);
    Py_XDECREF(rest);
    Py_XDECREF(kwargs);
    return result;
}

static PyObject *
BoundHandler_call(BoundHandlerObject *b, PyObject *const *args, size_t nargsf,
                  PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    HopObject *hop = b->hop;
    if (hop == NULL || hop->started_ns != 0) {
        /* Called a second time (never by asgiref): the original, untimed. */
        PyObject *method = PyMethod_New(b->original, b->self);
        if (method == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_Vectorcall(method, args, nargs, kwnames);
        Py_DECREF(method);
        return r;
    }
    HopObject *outer = tl_running;
    PyObject *outer_loop = tl_loop;
    tl_running = hop;
    tl_loop = nargs > 0 ? args[0] : NULL;
    PyObject *result;
    if (g_thread_hooks && g_thread_hook != NULL && g_thread_hook != Py_None) {
        result = run_thread_hook(b, args, nargs, kwnames);
    }
    else {
        hop->thread_id = thread_ident();
        /* One vectorcall with self in front, without a bound-method object:
         * PY_VECTORCALL_ARGUMENTS_OFFSET lets us borrow the slot before args. */
        PyObject *small[8];
        Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
        PyObject **stack = small;
        if (total + 1 > 8) {
            stack = PyMem_Malloc((total + 1) * sizeof(PyObject *));
            if (stack == NULL) {
                tl_running = outer;
                tl_loop = outer_loop;
                return PyErr_NoMemory();
            }
        }
        stack[0] = b->self;
        for (Py_ssize_t i = 0; i < total; i++) {
            stack[i + 1] = args[i];
        }
        hop->started_ns = now_ns();
        result = PyObject_Vectorcall(b->original, stack, nargs + 1, kwnames);
        hop->ended_ns = now_ns();
        if (stack != small) {
            PyMem_Free(stack);
        }
    }
    tl_running = outer;
    tl_loop = outer_loop;
    /* Done with the hop: the executor may keep this object (a partial in a
     * finished work item) a while; it must not keep the hop. */
    Py_CLEAR(b->hop);
    return result;
}

static void
BoundHandler_dealloc(BoundHandlerObject *b)
{
    /* Not tracked by the GC: it references a function, an adapter and a hop,
     * none of which can reach it back. */
    Py_XDECREF(b->original);
    Py_XDECREF(b->self);
    Py_XDECREF(b->hop);
    PyObject_Free(b);
}

static PyObject *
BoundHandler_get_self(BoundHandlerObject *b, void *c)
{
    (void)c;
    return Py_NewRef(b->self);
}

static PyObject *
BoundHandler_get_func(BoundHandlerObject *b, void *c)
{
    (void)c;
    return Py_NewRef(b->original);
}

/* The bound method it stands for: inspect.signature then gives asgiref's
 * parameters (New Relic's agent binds the arguments by them). */
static PyObject *
BoundHandler_get_wrapped(BoundHandlerObject *b, void *c)
{
    (void)c;
    return PyMethod_New(b->original, b->self);
}

static PyObject *
BoundHandler_repr(BoundHandlerObject *b)
{
    return PyUnicode_FromFormat("<bound method thread_handler of %R (timed by hopwatch)>",
                                b->self);
}

static PyGetSetDef BoundHandler_getset[] = {
    {"__self__", (getter)BoundHandler_get_self, NULL, NULL, NULL},
    {"__func__", (getter)BoundHandler_get_func, NULL, NULL, NULL},
    {"__wrapped__", (getter)BoundHandler_get_wrapped, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject BoundHandlerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.BoundHandler",
    .tp_basicsize = sizeof(BoundHandlerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "SyncToAsync.thread_handler bound to its adapter and the hop it runs.",
    .tp_dealloc = (destructor)BoundHandler_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(BoundHandlerObject, vectorcall),
    .tp_getset = BoundHandler_getset,
    .tp_repr = (reprfunc)BoundHandler_repr,
};

static PyObject *
bound_with(PatchObject *p, PyObject *obj, HopObject *hop)
{
    BoundHandlerObject *b = PyObject_New(BoundHandlerObject, &BoundHandlerType);
    if (b == NULL) {
        return NULL;
    }
    b->vectorcall = (vectorcallfunc)BoundHandler_call;
    b->original = Py_NewRef(p->original);
    b->self = Py_NewRef(obj);
    b->hop = (HopObject *)Py_NewRef((PyObject *)hop);
    return (PyObject *)b;
}

static PyObject *
bound_handler(PatchObject *p, PyObject *obj)
{
    HopObject *hop = tl_pending;
    if (hop == NULL || hop->adapter_id != (Py_ssize_t)(uintptr_t)obj || hop->started_ns != 0) {
        return PyMethod_New((PyObject *)p, obj);
    }
    tl_pending = NULL; /* one binding per hop */
    return bound_with(p, obj, hop);
}

/* main_wrap called with its awaitable (asgiref 3.9 and later) wrapped as the
 * hop's code (KIND_CODE), when it is the call's argument at g_awaitable_index
 * or keyword "awaitable"; otherwise as asgiref called it. */
static PyObject *
main_wrap_code(PatchObject *p, HopObject *hop, PyObject *const *args, size_t nargsf,
               PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    Py_ssize_t at = -1;
    if (nargs > g_awaitable_index) {
        at = g_awaitable_index;
    }
    else if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyUnicode_Check(PyTuple_GET_ITEM(kwnames, i)) &&
                PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "awaitable") == 0) {
                at = nargs + i;
                break;
            }
        }
    }
    if (at < 0 || total > 15) {
        return PyObject_Vectorcall(p->original, args, nargsf, kwnames);
    }
    HopAwaitableObject *a = awaitable_make(KIND_CODE, args[at], NULL, hop);
    if (a == NULL) {
        report_error("AsyncToSync.main_wrap");
        return PyObject_Vectorcall(p->original, args, nargsf, kwnames);
    }
    PyObject *stack[16];
    for (Py_ssize_t i = 0; i < total; i++) {
        stack[i] = args[i];
    }
    stack[at] = (PyObject *)a;
    PyObject *result = PyObject_Vectorcall(p->original, stack, nargs, kwnames);
    Py_DECREF(a);
    return result;
}

static PyObject *
main_wrap_call(PatchObject *p, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    /* Called by AsyncToSync.__call__ in the caller's thread, where tl_a2s is
     * the hop being made (for this adapter, not started yet); what main_wrap
     * runs runs later, on the target loop. */
    HopObject *hop = g_active && nargs >= 1 ? tl_a2s : NULL;
    if (hop == NULL || hop->adapter_id != (Py_ssize_t)(uintptr_t)args[0] ||
        hop->started_ns != 0 || hop->direction != s_async_to_sync) {
        return PyObject_Vectorcall(p->original, args, nargsf, kwnames);
    }
    if (g_awaitable_index >= 0) {
        return main_wrap_code(p, hop, args, nargsf, kwnames);
    }
    /* asgiref 3.8: main_wrap makes the awaitable itself; its coroutine is timed. */
    PyObject *inner = PyObject_Vectorcall(p->original, args, nargsf, kwnames);
    if (inner == NULL) {
        return NULL;
    }
    HopAwaitableObject *a = awaitable_make(KIND_MAIN, inner, NULL, hop);
    Py_DECREF(inner);
    return (PyObject *)a;
}

static PyObject *
Patch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"original", "which", NULL};
    PyObject *original;
    int which;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oi", kwlist, &original, &which)) {
        return NULL;
    }
    PatchObject *p = (PatchObject *)type->tp_alloc(type, 0);
    if (p == NULL) {
        return NULL;
    }
    p->original = Py_NewRef(original);
    p->dict = NULL;
    p->which = which;
    switch (which) {
        case P_S2A_CALL:
            p->vectorcall = (vectorcallfunc)s2a_call;
            break;
        case P_A2S_CALL:
            p->vectorcall = (vectorcallfunc)a2s_call;
            break;
        case P_THREAD_HANDLER: /* timed through bound_handler, when bound */
            p->vectorcall = (vectorcallfunc)patch_passthrough;
            break;
        case P_MAIN_WRAP:
            p->vectorcall = (vectorcallfunc)main_wrap_call;
            break;
        default:
            p->vectorcall = (vectorcallfunc)patch_passthrough;
    }
    return (PyObject *)p;
}

static PyObject *
Patch_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    if (((PatchObject *)self)->which == P_THREAD_HANDLER && tl_pending != NULL) {
        return bound_handler((PatchObject *)self, obj);
    }
    return PyMethod_New(self, obj);
}

static int
Patch_traverse(PatchObject *p, visitproc visit, void *arg)
{
    Py_VISIT(p->original);
    Py_VISIT(p->dict);
    return 0;
}

static int
Patch_clear(PatchObject *p)
{
    Py_CLEAR(p->original);
    Py_CLEAR(p->dict);
    return 0;
}

static void
Patch_dealloc(PatchObject *p)
{
    PyObject_GC_UnTrack(p);
    Patch_clear(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *
Patch_repr(PatchObject *p)
{
    return PyUnicode_FromFormat("<hopwatch patch of %R>", p->original);
}

static PyMemberDef Patch_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(PatchObject, original), READONLY, NULL},
    {NULL},
};

static PyTypeObject PatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.Patch",
    .tp_basicsize = sizeof(PatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR |
                Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A method hopwatch installed on an asgiref class; calls the original.",
    .tp_new = Patch_new,
    .tp_dealloc = (destructor)Patch_dealloc,
    .tp_traverse = (traverseproc)Patch_traverse,
    .tp_clear = (inquiry)Patch_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(PatchObject, vectorcall),
    .tp_descr_get = Patch_descr_get,
    .tp_dictoffset = offsetof(PatchObject, dict),
    .tp_members = Patch_members,
    .tp_repr = (reprfunc)Patch_repr,
};

/* ---------------------------------------------------------------- module */

static PyObject *
py_configure(PyObject *module, PyObject *args, PyObject *kwds)
{
    (void)module;
    static char *kwlist[] = {"current_scope", "resolve", "classify_code", "unscoped", "late",
                             "overflow_cause", "report", "cancelled", "get_running_loop",
                             "threadlocal", "partial", "thread_sensitive_context",
                             "request_context", "awaitable_index", "awaiting",
                             "loop_on_adapter", "get_ident", "adopt", "layer", NULL};
    PyObject *v[13] = {NULL};
    Py_ssize_t awaitable_index = -1;
    PyObject *awaiting = NULL;
    int loop_on_adapter = 1;
    PyObject *get_ident = NULL;
    PyObject *adopt = NULL;
    PyObject *layer = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOOO|OOnOpOOO", kwlist, &v[0], &v[1],
                                     &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
                                     &v[10], &v[11], &v[12], &awaitable_index, &awaiting,
                                     &loop_on_adapter, &get_ident, &adopt, &layer)) {
        return NULL;
    }
    if (get_ident == Py_None) {
        get_ident = NULL;
    }
    if (get_ident != NULL && !PyCallable_Check(get_ident)) {
        PyErr_SetString(PyExc_TypeError, "configure: get_ident must be callable");
        return NULL;
    }
    /* The builtin reads the OS thread's id, as PyThread_get_thread_ident does. */
    Py_XSETREF(g_get_ident, get_ident != NULL && !PyCFunction_Check(get_ident)
                                ? Py_NewRef(get_ident)
                                : NULL);
    if (awaitable_index >= 0 && (awaitable_index < 1 || awaiting == NULL ||
                                 !PyCallable_Check(awaiting))) {
        PyErr_SetString(PyExc_TypeError,
                        "configure: awaitable_index (main_wrap's awaitable, counting self) goes"
                        " with awaiting (a callable)");
        return NULL;
    }
    g_awaitable_index = awaitable_index;
    Py_XSETREF(g_awaiting, Py_XNewRef(awaiting));
    g_loop_on_adapter = loop_on_adapter;
    Py_XSETREF(g_adopt, Py_XNewRef(adopt));
    Py_XSETREF(g_layer, layer == Py_None ? NULL : Py_XNewRef(layer));
    Py_CLEAR(g_declined);
    if ((v[11] != NULL) != (v[12] != NULL) ||
        (v[11] != NULL && (!PyContextVar_CheckExact(v[11]) || !PyType_Check(v[12])))) {
        PyErr_SetString(PyExc_TypeError,
                        "configure: thread_sensitive_context (a ContextVar) and request_context"
                        " (a type) go together");
        return NULL;
    }
    PyObject **slots[] = {&g_current_scope, &g_resolve, &g_classify_code, &g_unscoped, &g_late,
                          &g_overflow_cause, &g_report, &g_cancelled, &g_get_running_loop,
                          &g_threadlocal, &g_partial_type, &g_tsc_var, &g_request_context_type};
    for (int i = 0; i < 13; i++) {
        Py_XSETREF(*slots[i], Py_XNewRef(v[i]));
    }
    /* The record's slot (RequestContext's __slots__), when it is a plain one. */
    g_record_offset = -1;
    if (g_request_context_type != NULL) {
        PyObject *descr = PyDict_GetItemWithError(
            ((PyTypeObject *)g_request_context_type)->tp_dict, s_record);
        if (descr == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
            ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX) {
            g_record_offset = ((PyMemberDescrObject *)descr)->d_member->offset;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
py_set_active(PyObject *module, PyObject *arg)
{
    (void)module;
    int truth = PyObject_IsTrue(arg);
    if (truth < 0) {
        return NULL;
    }
    g_active = truth;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ the scope */

/* enter_scope(var, ledger) -> token: make ledger the value of var (the scope
 * contextvar) inside the current one, which becomes its parent (and every hop
 * of it its parent's too); an async_to_sync whose code runs here stays the
 * parent of the hops made in it (outer_hop). hopwatch._hotpath_py.enter_scope
 * is the reference. */
static PyObject *
py_enter_scope(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyContextVar_CheckExact(args[0]) ||
        !PyObject_TypeCheck(args[1], &LedgerCoreType)) {
        PyErr_SetString(PyExc_TypeError, "enter_scope(var, ledger)");
        return NULL;
    }
    LedgerCoreObject *l = (LedgerCoreObject *)args[1];
    PyObject *value = NULL;
    if (scope_value(args[0], &value) < 0) {
        return NULL;
    }
    if (Py_IS_TYPE(value, &HopType)) {
        PyObject *scope = ((HopObject *)value)->scope;
        Py_XSETREF(l->parent, Py_NewRef(scope ? scope : Py_None));
        Py_XSETREF(l->outer_hop, Py_NewRef(value));
    }
    else if (value != Py_None) {
        PyObject *outer;
        if (PyObject_TypeCheck(value, &LedgerCoreType)) {
            outer = Py_NewRef(((LedgerCoreObject *)value)->outer_hop
                                  ? ((LedgerCoreObject *)value)->outer_hop
                                  : Py_None);
        }
        else {
            outer = PyObject_GetAttrString(value, "outer_hop");
            if (outer == NULL) {
                Py_DECREF(value);
                return NULL;
            }
        }
        Py_XSETREF(l->parent, Py_NewRef(value));
        Py_XSETREF(l->outer_hop, outer);
    }
    Py_DECREF(value);
    return PyContextVar_Set(args[0], args[1]);
}

/* find_scope(var, cls): the innermost scope of var's value (an async_to_sync
 * hop's is its scope) that is an instance of cls, following parents; None if
 * there is none. hopwatch._hotpath_py.find_scope is the reference. */
static PyObject *
py_find_scope(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyContextVar_CheckExact(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "find_scope(var, cls)");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[1];
    PyObject *scope = NULL;
    if (scope_value(args[0], &scope) < 0) {
        return NULL;
    }
    if (Py_IS_TYPE(scope, &HopType)) {
        PyObject *inner = ((HopObject *)scope)->scope;
        Py_SETREF(scope, Py_NewRef(inner ? inner : Py_None));
    }
    while (scope != Py_None && !PyObject_TypeCheck(scope, cls)) {
        PyObject *parent;
        if (PyObject_TypeCheck(scope, &LedgerCoreType)) {
            parent = ((LedgerCoreObject *)scope)->parent;
            parent = Py_NewRef(parent ? parent : Py_None);
        }
        else {
            parent = PyObject_GetAttrString(scope, "parent");
        }
        Py_SETREF(scope, parent);
        if (scope == NULL) {
            return NULL;
        }
    }
    return scope;
}

/* scope_value(var): see scope_value above. */
static PyObject *
py_scope_value(PyObject *module, PyObject *var)
{
    (void)module;
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "scope_value(var)");
        return NULL;
    }
    PyObject *value = NULL;
    return scope_value(var, &value) < 0 ? NULL : value;
}

static PyObject *s_get;

/* mapping.get(key) (a new reference; None when missing), a dict's without a call. */
static PyObject *
mapping_get(PyObject *mapping, PyObject *key)
{
    if (PyDict_CheckExact(mapping)) {
        PyObject *value = PyDict_GetItemWithError(mapping, key);
        if (value == NULL && PyErr_Occurred()) {
            return NULL;
        }
        return Py_NewRef(value ? value : Py_None);
    }
    return PyObject_CallMethodOneArg(mapping, s_get, key);
}

/* start_request(var, cls, interface, scope) -> record | None: an async
 * handler's request begins: cls(interface), entered as var's scope (its token
 * kept as record.scope_token; var None: entered nowhere, for the caller to
 * hand to Django's ThreadSensitiveContext), with the method and path of the
 * ASGI scope. An error is reported ("<interface> handler") and gives None. The
 * reference is hopwatch._hotpath_py.start_request. */
static PyObject *
py_start_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "start_request(var, cls, interface, scope)");
        return NULL;
    }
    PyObject *record = PyObject_CallOneArg(args[1], args[2]);
    if (record == NULL) {
        goto fail;
    }
    int r;
    if (args[0] != Py_None) {
        PyObject *enter[2] = {args[0], record};
        PyObject *token = py_enter_scope(module, enter, 2);
        if (token == NULL) {
            goto fail;
        }
        r = rf_set(record, RF_SCOPE_TOKEN, token);
        Py_DECREF(token);
        if (r < 0) {
            goto fail;
        }
    }
    int fields[2] = {RF_METHOD, RF_PATH};
    for (int i = 0; i < 2; i++) {
        PyObject *value = mapping_get(args[3], *g_rf_names[fields[i]]);
        if (value == NULL) {
            goto fail;
        }
        r = rf_set(record, fields[i], value);
        Py_DECREF(value);
        if (r < 0) {
            goto fail;
        }
    }
    return record;
fail:
    Py_XDECREF(record);
    {
        const char *interface = PyUnicode_Check(args[2]) ? PyUnicode_AsUTF8(args[2]) : NULL;
        char where[96];
        PyOS_snprintf(where, sizeof where, "%.80s handler", interface ? interface : "?");
        if (interface == NULL && !PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "start_request: the interface is not a str");
        }
        report_error(where);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------- the middleware */

static PyObject *s_mw_meta, *s_mw_getrandbits, *s_mw_resolver_match;
static PyObject *s_mw_route, *s_mw_status_code, *s_mw_empty, *g_bits64;

/* A request id from a header is kept when it is 1 to 128 of A-Z a-z 0-9 and
 * ._:/+=- (hopwatch._hotpath_py.REQUEST_ID_OK, the reference). */
static int
request_id_ok(PyObject *value)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(value) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (n < 1 || n > 128 || !PyUnicode_IS_ASCII(value)) {
        return 0;
    }
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(value);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == ':' || c == '/' || c == '+' || c == '=' ||
                 c == '-';
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

static int
copy_attr(PyObject *to, int field, PyObject *from, PyObject *from_name)
{
    PyObject *value = PyObject_GetAttr(from, from_name);
    if (value == NULL) {
        return -1;
    }
    int r = rf_set(to, field, value);
    Py_DECREF(value);
    return r;
}

/* begin_request(var, cls, request, meta_key, ids) -> record | None: the
 * middleware's begin for a request whose record is open (the handler opened
 * it): its method, path and request id (from request.META[meta_key] when that
 * is a usable id, else 16 hex digits of ids.getrandbits(64)). None when there
 * is no record of cls in var's scope. hopwatch._hotpath_py.begin_request is
 * the reference. */
static PyObject *
py_begin_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "begin_request(var, cls, request, meta_key, ids)");
        return NULL;
    }
    PyObject *record = py_find_scope(module, args, 2);
    if (record == NULL || record == Py_None) {
        return record;
    }
    PyObject *request = args[2], *meta_key = args[3], *id = NULL;
    if (copy_attr(record, RF_METHOD, request, s_r_method) < 0 ||
        copy_attr(record, RF_PATH, request, s_mw_path) < 0) {
        goto fail;
    }
    if (meta_key != Py_None) {
        PyObject *meta = PyObject_GetAttr(request, s_mw_meta);
        if (meta == NULL) {
            goto fail;
        }
        PyObject *value = mapping_get(meta, meta_key);
        Py_DECREF(meta);
        if (value == NULL) {
            goto fail;
        }
        if (PyUnicode_Check(value) && request_id_ok(value)) {
            id = value;
        }
        else {
            Py_DECREF(value);
        }
    }
    if (id == NULL) {
        PyObject *bits = PyObject_CallMethodOneArg(args[4], s_mw_getrandbits, g_bits64);
        if (bits == NULL) {
            goto fail;
        }
        unsigned long long v = PyLong_AsUnsignedLongLong(bits);
        Py_DECREF(bits);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            goto fail;
        }
        static const char hex[] = "0123456789abcdef";
        char text[16];
        for (int i = 15; i >= 0; i--) {
            text[i] = hex[v & 15];
            v >>= 4;
        }
        id = PyUnicode_FromStringAndSize(text, 16);
        if (id == NULL) {
            goto fail;
        }
    }
    int r = rf_set(record, RF_REQUEST_ID, id);
    Py_DECREF(id);
    if (r < 0) {
        goto fail;
    }
    return record;
fail:
    Py_DECREF(record);
    return NULL;
}

/* name_request(cache, names_of, record, request, response): the middleware's
 * naming of a request when its response (None if it raised) is back: route
 * and view from request.resolver_match (names_of(match, method), through its
 * cache: {(pattern, id(view), method): (view, route name, view name)}), the
 * status, and the request itself for the extra-fields hook. An error is
 * reported, never raised. hopwatch._hotpath_py.name_request is the reference. */
static PyObject *
py_name_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "name_request(cache, names_of, record, request, response)");
        return NULL;
    }
    PyObject *cache = args[0], *names_of = args[1], *record = args[2], *request = args[3];
    PyObject *response = args[4];
    if (record == Py_None) {
        Py_RETURN_NONE;
    }
    PyObject *match = NULL, *func = NULL, *route = NULL, *method = NULL, *key = NULL;
    PyObject *names = NULL;
    if (lookup_attr(request, s_mw_resolver_match, &match) < 0) {
        goto fail;
    }
    if (match != NULL && match != Py_None) {
        method = PyObject_GetAttr(request, s_r_method);
        if (method == NULL || lookup_attr(match, s_func, &func) < 0 ||
            lookup_attr(match, s_mw_route, &route) < 0) {
            goto fail;
        }
        PyObject *id = PyLong_FromVoidPtr(func ? func : Py_None);
        int has_method = method != Py_None && PyObject_IsTrue(method);
        if (id == NULL || has_method < 0) {
            Py_XDECREF(id);
            goto fail;
        }
        key = PyTuple_Pack(3, route ? route : Py_None, id, has_method ? method : s_mw_empty);
        Py_DECREF(id);
        if (key == NULL) {
            goto fail;
        }
        PyObject *entry = PyDict_Check(cache) ? PyDict_GetItemWithError(cache, key) : NULL;
        if (entry == NULL && PyErr_Occurred()) {
            goto fail;
        }
        Py_ssize_t at; /* where the two names are in names */
        if (entry != NULL && PyTuple_CheckExact(entry) && PyTuple_GET_SIZE(entry) == 3 &&
            PyTuple_GET_ITEM(entry, 0) == (func ? func : Py_None)) {
            names = Py_NewRef(entry); /* (view, route name, view name) */
            at = 1;
        }
        else {
            PyObject *call[2] = {match, method};
            names = PyObject_Vectorcall(names_of, call, 2, NULL);
            if (names == NULL) {
                goto fail;
            }
            if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != 2) {
                PyErr_SetString(PyExc_TypeError, "names_of did not give (route, view)");
                goto fail;
            }
            at = 0;
        }
        if (rf_set(record, RF_ROUTE, PyTuple_GET_ITEM(names, at)) < 0 ||
            rf_set(record, RF_VIEW, PyTuple_GET_ITEM(names, at + 1)) < 0) {
            goto fail;
        }
    }
    if (response != Py_None && copy_attr(record, RF_STATUS, response, s_mw_status_code) < 0) {
        /* Not a response: the app's own bug (a MiddlewareMixin's async
         * process_request under WSGI returns its coroutine), which fails the
         * request in Django's handler; the status stays unknown. */
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            goto fail;
        }
        PyErr_Clear();
    }
    if (rf_set(record, RF_REQUEST, request) < 0) {
        goto fail;
    }
    goto done;
fail:
    report_error("HopwatchMiddleware (response)");
done:
    Py_XDECREF(match);
    Py_XDECREF(func);
    Py_XDECREF(route);
    Py_XDECREF(method);
    Py_XDECREF(key);
    Py_XDECREF(names);
    Py_RETURN_NONE;
}

static PyObject *
py_set_thread_hook(PyObject *module, PyObject *arg)
{
    (void)module;
    /* None: no hook; else hook(hop, handler, args, kwargs) runs every timed
     * sync_to_async handler (profiling turns it on while it has requests). */
    Py_XSETREF(g_thread_hook, Py_NewRef(arg));
    g_thread_hooks = (arg != Py_None);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ log record */

/* The fields of the line's logging.LogRecord (hopwatch._emit's
 * _StdlibLine._record): ``record`` is the new record, ``constant``
 * the fields a record made once holds the same on every line, ``clock`` the
 * time LogRecord.__init__ reads (time.time() before Python 3.13, time.ns()
 * from it), ``logging`` the logging module, whose switches are read per line
 * as __init__ reads them. Values, keys and their order are __init__'s (see
 * fill_log_record in hopwatch._hotpath_py, the reference, and tests/test_log.py). */
static PyObject *s_lr_msg, *s_lr_levelname, *s_lr_created, *s_lr_msecs, *s_lr_relative,
    *s_lr_thread, *s_lr_thread_name, *s_lr_process_name, *s_lr_process, *s_lr_task_name;
static PyObject *s_lg_start_time, *s_lg_log_threads, *s_lg_log_mp, *s_lg_log_processes,
    *s_lg_log_tasks, *s_lg_level_to_name, *s_lg_get_level_name, *s_lg_threading,
    *s_current_thread, *s_name, *s_current_process, *s_current_task, *s_get_name,
    *s_multiprocessing, *s_asyncio, *s_main_process;
static PyObject *g_info_level; /* 20 */

/* logging.<name> (a new reference): the module's dict entry, as attribute
 * lookup on a module finds it, without the generic lookup's cost */
static PyObject *
module_attr(PyObject *module, PyObject *name)
{
    if (PyModule_CheckExact(module)) {
        PyObject *v = PyDict_GetItemWithError(PyModule_GetDict(module), name);
        if (v != NULL) {
            return Py_NewRef(v);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyObject_GetAttr(module, name);
}

/* bool(v), the reference to v taken (NULL: the error it was got with): 1, 0, -1 */
static int
true_taken(PyObject *v)
{
    if (v == NULL) {
        return -1;
    }
    int rc = PyObject_IsTrue(v);
    Py_DECREF(v);
    return rc;
}

/* logging.<name> is true; -1 on error */
static int
logging_flag(PyObject *logging, PyObject *name)
{
    return true_taken(module_attr(logging, name));
}

/* obj.<method>().<attr>, as ``except Exception: pass`` around it: 1 with *out
 * set, 0 when an Exception was swallowed, -1 on any other error. */
static int
call_then_attr(PyObject *obj, PyObject *method, PyObject *attr, int call_attr, PyObject **out)
{
    PyObject *made = PyObject_CallMethodNoArgs(obj, method);
    PyObject *v = NULL;
    if (made != NULL) {
        v = call_attr ? PyObject_CallMethodNoArgs(made, attr) : PyObject_GetAttr(made, attr);
        Py_DECREF(made);
    }
    if (v == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    *out = v;
    return 1;
}

static int
fill_time(PyObject *fields, PyObject *clock, PyObject *logging)
{
    PyObject *start = module_attr(logging, s_lg_start_time);
    if (start == NULL) {
        return -1;
    }
    int rc = -1;
    if (PyLong_CheckExact(clock)) { /* 3.13: time_ns(), and _startTime too */
        long long ct = PyLong_AsLongLong(clock);
        long long st = PyLong_AsLongLong(start);
        if ((ct == -1 || st == -1) && PyErr_Occurred()) {
            goto done;
        }
        double created = (double)ct / 1e9;
        long long rem = ct % 1000000000LL;
        if (rem < 0) {
            rem += 1000000000LL;
        }
        double msecs = (double)(rem / 1000000LL) + 0.0;
        long long whole = ct / 1000000000LL - (ct % 1000000000LL < 0);
        if (msecs == 999.0 && (long long)created != whole) {
            msecs = 0.0;
        }
        if (put_new(fields, s_lr_created, PyFloat_FromDouble(created)) < 0 ||
            put_new(fields, s_lr_msecs, PyFloat_FromDouble(msecs)) < 0 ||
            put_new(fields, s_lr_relative, PyFloat_FromDouble((double)(ct - st) / 1e6)) < 0) {
            goto done;
        }
    }
    else { /* before 3.13: time(), a float */
        double ct = PyFloat_AsDouble(clock);
        double st = PyFloat_AsDouble(start);
        if ((ct == -1.0 || st == -1.0) && PyErr_Occurred()) {
            goto done;
        }
        /* int() truncates toward zero, as the casts do (the values are far below 2**63) */
        double msecs = (double)(long long)((ct - (double)(long long)ct) * 1000.0) + 0.0;
        if (PyDict_SetItem(fields, s_lr_created, clock) < 0 ||
            put_new(fields, s_lr_msecs, PyFloat_FromDouble(msecs)) < 0 ||
            put_new(fields, s_lr_relative, PyFloat_FromDouble((ct - st) * 1000.0)) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_DECREF(start);
    return rc;
}

static int
fill_record_fields(PyObject *fields, PyObject *message, PyObject *clock, PyObject *logging)
{
    if (PyDict_SetItem(fields, s_lr_msg, message) < 0) {
        return -1;
    }
    /* logging.getLevelName(INFO): its _levelToName entry, else the function */
    PyObject *names = module_attr(logging, s_lg_level_to_name);
    PyObject *level = NULL;
    if (names != NULL && PyDict_Check(names)) {
        level = Py_XNewRef(PyDict_GetItemWithError(names, g_info_level));
    }
    Py_XDECREF(names);
    if (level == NULL) {
        if (names == NULL) {
            PyErr_Clear();
        }
        if (PyErr_Occurred()) {
            return -1;
        }
        level = PyObject_CallMethodOneArg(logging, s_lg_get_level_name, g_info_level);
    }
    if (put_new(fields, s_lr_levelname, level) < 0 || fill_time(fields, clock, logging) < 0) {
        return -1;
    }
    int on = logging_flag(logging, s_lg_log_threads);
    if (on < 0) {
        return -1;
    }
    if (on) {
        PyObject *threading = module_attr(logging, s_lg_threading);
        if (threading == NULL) {
            return -1;
        }
        PyObject *current = PyObject_CallMethodNoArgs(threading, s_current_thread);
        Py_DECREF(threading);
        PyObject *name = current ? PyObject_GetAttr(current, s_name) : NULL;
        Py_XDECREF(current);
        if (put_new(fields, s_lr_thread,
                      PyLong_FromUnsignedLongLong(thread_ident())) < 0 ||
            put_new(fields, s_lr_thread_name, name) < 0) {
            return -1;
        }
    }
    else if (PyDict_SetItem(fields, s_lr_thread, Py_None) < 0 ||
             PyDict_SetItem(fields, s_lr_thread_name, Py_None) < 0) {
        return -1;
    }
    if ((on = logging_flag(logging, s_lg_log_mp)) < 0) {
        return -1;
    }
    PyObject *process_name = Py_None;
    PyObject *named = NULL;
    if (on) {
        process_name = s_main_process;
        PyObject *mp = PyDict_GetItemWithError(PyImport_GetModuleDict(), s_multiprocessing);
        if (mp == NULL && PyErr_Occurred()) {
            return -1;
        }
        if (mp != NULL && mp != Py_None) {
            int got = call_then_attr(mp, s_current_process, s_name, 0, &named);
            if (got < 0) {
                return -1;
            }
            if (got) {
                process_name = named;
            }
        }
    }
    int rc = PyDict_SetItem(fields, s_lr_process_name, process_name);
    Py_XDECREF(named);
    if (rc < 0 || (on = logging_flag(logging, s_lg_log_processes)) < 0) {
        return -1;
    }
    if (on ? put_new(fields, s_lr_process, PyLong_FromLong((long)getpid())) < 0
           : PyDict_SetItem(fields, s_lr_process, Py_None) < 0) {
        return -1;
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* LogRecord has taskName from 3.12 on */
    PyObject *task_name = NULL;
    PyObject *asyncio = PyDict_GetItemWithError(PyImport_GetModuleDict(), s_asyncio);
    if (asyncio == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (asyncio != NULL && PyObject_IsTrue(asyncio) == 1) {
        if ((on = logging_flag(logging, s_lg_log_tasks)) < 0) {
            return -1;
        }
        if (on && call_then_attr(asyncio, s_current_task, s_get_name, 1, &task_name) < 0) {
            return -1;
        }
    }
    rc = PyDict_SetItem(fields, s_lr_task_name, task_name ? task_name : Py_None);
    Py_XDECREF(task_name);
    if (rc < 0) {
        return -1;
    }
#endif
    return 0;
}

static PyObject *
py_fill_log_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "fill_log_record(record, constant, message, clock, logging)");
        return NULL;
    }
    /* A copy of the constant fields (one allocation, in their order) made the
     * record's __dict__: the same dict, without inserting every key anew. */
    PyObject *fields = PyDict_Copy(args[1]);
    if (fields == NULL) {
        return NULL;
    }
    if (fill_record_fields(fields, args[2], args[3], args[4]) < 0 ||
        PyObject_SetAttr(args[0], s_dict, fields) < 0) {
        Py_DECREF(fields);
        return NULL;
    }
    Py_DECREF(fields);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------- line delivery */

/* deliver_line(logger, message, make_record, logging): Logger.handle for one
 * INFO line, the record made only for a handler that reads it. The reference,
 * with the rules and why, is deliver_line in hopwatch._hotpath_py; this is the
 * same walk, step for step (tests/test_log.py runs both on each configuration). */
static PyObject *s_dl_filters, *s_dl_handlers, *s_dl_level, *s_dl_formatter, *s_dl_style,
    *s_dl_fmt, *s_dl_lock, *s_dl_stream, *s_dl_terminator, *s_dl_write, *s_dl_flush,
    *s_dl_emit, *s_dl_handle, *s_dl_handle_error, *s_dl_call_handlers, *s_dl_parent,
    *s_dl_propagate, *s_dl_acquire, *s_dl_release, *s_dl_message_fmt, *s_dl_file_handler,
    *s_dl_stream_handler, *s_dl_formatter_cls, *s_dl_percent_style, *s_dl_log_record,
    *s_dl_default_formatter, *s_dl_filter, *s_dl_format, *s_dl_format_message,
    *s_dl_uses_time, *s_dl_underscore_format, *s_dl_get_message, *s_dl_handler_cls,
    *s_dl_null_handler;
static PyTypeObject *g_rlock_type;

/* The logging classes a line's delivery reads, from the logging module's dict
 * (borrowed; NULL when missing or not a class: then nothing is plain). */
typedef struct {
    PyObject *own; /* logging.__dict__: the globals of logging's own functions */
    PyTypeObject *file, *stream, *formatter, *style, *record;
} logging_classes;

static PyTypeObject *
logging_type(PyObject *own, PyObject *name)
{
    PyObject *v = PyDict_GetItemWithError(own, name);
    return (v != NULL && PyType_Check(v)) ? (PyTypeObject *)v : NULL;
}

static int
get_logging_classes(PyObject *logging, logging_classes *c)
{
    c->own = PyModule_GetDict(logging);
    c->file = logging_type(c->own, s_dl_file_handler);
    c->stream = logging_type(c->own, s_dl_stream_handler);
    c->formatter = logging_type(c->own, s_dl_formatter_cls);
    c->style = logging_type(c->own, s_dl_percent_style);
    c->record = logging_type(c->own, s_dl_log_record);
    return PyErr_Occurred() ? -1 : 0;
}

/* cls.<name> is a function defined in the logging module */
static inline int
logging_method(PyTypeObject *cls, PyObject *name, PyObject *own)
{
    PyObject *m = cls ? _PyType_Lookup(cls, name) : NULL;
    return m != NULL && PyFunction_Check(m) && PyFunction_GET_GLOBALS(m) == own;
}

/* The classes last found to have logging's own methods, and their type version
 * tags then: a class's tag changes (to 0, then to a new one) whenever it or a
 * base class is modified (PyType_Modified), so equal nonzero tags mean the
 * methods found then are still the ones found now. */
#define OWN_CLASSES 6
static PyTypeObject *g_own_classes[OWN_CLASSES];
static unsigned int g_own_tags[OWN_CLASSES];
static PyObject *g_own_dict;

/* _logging_own in the reference: 1 yes, 0 no */
static int
logging_own(PyTypeObject *logger_type, logging_classes *c)
{
    PyTypeObject *classes[OWN_CLASSES] = {logger_type, c->file, c->stream,
                                          c->formatter, c->style, c->record};
    if (g_own_dict == c->own) {
        int same = 1;
        for (int i = 0; i < OWN_CLASSES && same; i++) {
            same = classes[i] == g_own_classes[i] && classes[i] != NULL &&
                   classes[i]->tp_version_tag != 0 &&
                   classes[i]->tp_version_tag == g_own_tags[i];
        }
        if (same) {
            return 1;
        }
    }
    PyObject *own = c->own;
    PyObject *handler_names[] = {s_dl_handle, s_dl_filter, s_dl_format, s_dl_emit, s_dl_flush};
    if (!logging_method(logger_type, s_dl_handle, own) ||
        !logging_method(logger_type, s_dl_call_handlers, own) ||
        !logging_method(logger_type, s_dl_filter, own)) {
        return 0;
    }
    for (int i = 0; i < 5; i++) {
        if (!logging_method(c->file, handler_names[i], own) ||
            !logging_method(c->stream, handler_names[i], own)) {
            return 0;
        }
    }
    if (!(logging_method(c->formatter, s_dl_format, own) &&
          logging_method(c->formatter, s_dl_format_message, own) &&
          logging_method(c->formatter, s_dl_uses_time, own) &&
          logging_method(c->style, s_dl_format, own) &&
          logging_method(c->style, s_dl_underscore_format, own) &&
          logging_method(c->style, s_dl_uses_time, own) &&
          logging_method(c->record, s_dl_get_message, own))) {
        return 0;
    }
    /* remembered (borrowed pointers, compared only: a class freed and another
     * made at its address has a new version tag) */
    g_own_dict = own;
    for (int i = 0; i < OWN_CLASSES; i++) {
        g_own_classes[i] = classes[i];
        g_own_tags[i] = classes[i]->tp_version_tag;
    }
    return 1;
}

/* getattr(obj, name): instance_attr's shortcut for the plain instance attributes
 * of loggers and handlers, else getattr (which also raises the AttributeError) */
static inline PyObject *
plain_attr(PyObject *obj, PyObject *name)
{
    PyObject *v;
    int rc = instance_attr(obj, name, &v);
    if (rc > 0) {
        return v;
    }
    return rc < 0 ? NULL : PyObject_GetAttr(obj, name);
}

/* getattr(obj, name) is true: 1, 0, -1 */
static int
attr_true(PyObject *obj, PyObject *name)
{
    return true_taken(plain_attr(obj, name));
}

/* The handler methods deliver_line stands in for (_HANDLER_METHODS in the
 * reference): one set on the handler itself is called instead. */
#define HANDLER_METHODS 5
static PyObject **g_handler_methods[HANDLER_METHODS] = {&s_dl_handle, &s_dl_filter, &s_dl_format,
                                                        &s_dl_emit, &s_dl_flush};

#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
/* Where those names are among a handler class's shared keys (the names its
 * instances keep in inline values), for the keys last probed, with as many
 * entries (keys only gain entries, at the end): -1 absent. One for each of
 * FileHandler and StreamHandler. Most processes never set one on a handler:
 * the keys lack all five (any 0). */
typedef struct {
    const void *keys;
    Py_ssize_t nentries;
    Py_ssize_t ix[HANDLER_METHODS];
    int any;
} HandlerKeys;
static HandlerKeys g_handler_keys[2];

/* The handler's inline values when they hold its attributes (no dict has taken
 * them over), as inline_attr finds them; NULL otherwise. *keys and *capacity set. */
static inline PyObject **
handler_values(PyObject *obj, PyTypeObject *type, SharedKeys **keys, Py_ssize_t *capacity)
{
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        return NULL;
    }
    *keys = (SharedKeys *)((PyHeapTypeObject *)type)->ht_cached_keys;
    if (*keys == NULL || (*keys)->dk_kind != SHARED_KEYS_SPLIT) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030D0000
    if (!(type->tp_flags & Py_TPFLAGS_INLINE_VALUES) || type->tp_basicsize != sizeof(PyObject)) {
        return NULL;
    }
    InlineValues *inline_values = (InlineValues *)((char *)obj + sizeof(PyObject));
    *capacity = inline_values->capacity;
    return inline_values->valid ? inline_values->values : NULL;
#else
    /* 3.11, 3.12: the values have room for every entry the keys can hold */
    *capacity = PY_SSIZE_T_MAX;
    if (!(type->tp_flags & Py_TPFLAGS_MANAGED_DICT)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    uintptr_t slot = ((uintptr_t *)obj)[-3];
    return (slot & 1) ? (PyObject **)(slot + 1) : NULL;
#else
    return ((PyObject ***)obj)[-4];
#endif
#endif
}
#endif

/* One of those methods is set on the handler itself (`file`: a FileHandler,
 * else a StreamHandler): 1, 0, -1. Its attributes are in inline values (the
 * usual handler: its class's keys compared with the ones last probed, no
 * lookup) or in its dict (a lookup of each name, only for a handler that has
 * one); on a Python past 3.13, the dict (made if need be). */
static int
overrides_method(PyObject *handler, int file)
{
#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
    SharedKeys *keys = NULL;
    Py_ssize_t capacity = 0;
    PyObject **values = handler_values(handler, Py_TYPE(handler), &keys, &capacity);
    if (values != NULL) {
        HandlerKeys *known = &g_handler_keys[file];
        if (known->keys != (const void *)keys || known->nentries != keys->dk_nentries) {
            int any = 0;
            known->keys = NULL;
            for (int i = 0; i < HANDLER_METHODS; i++) {
                known->ix[i] = probe_keys(keys, *g_handler_methods[i], NULL);
                if (known->ix[i] == -2) { /* not known here: through the dict below */
                    goto by_dict;
                }
                any |= known->ix[i] >= 0;
            }
            known->keys = keys;
            known->nentries = keys->dk_nentries;
            known->any = any;
        }
        if (known->any) {
            for (int i = 0; i < HANDLER_METHODS; i++) {
                Py_ssize_t ix = known->ix[i];
                if (ix >= 0 && (ix >= capacity || values[ix] != NULL)) {
                    return 1; /* (past the values' room: not plain, to be safe) */
                }
            }
        }
        return 0;
    }
by_dict:;
#endif
    PyObject *dict = existing_dict(handler);
    if (dict == NULL) {
        return 0;
    }
    for (int i = 0; i < HANDLER_METHODS; i++) {
        int rc = PyDict_Contains(dict, *g_handler_methods[i]);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* _plain_handler in the reference: 1 yes (*lock set: the handler's lock), 0 no, -1 error */
static int
plain_handler(PyObject *handler, logging_classes *c, PyObject **lock)
{
    PyTypeObject *kind = Py_TYPE(handler);
    if (kind == NULL || (kind != c->file && kind != c->stream)) {
        return 0;
    }
    int overrides = overrides_method(handler, kind == c->file);
    if (overrides != 0) {
        return overrides < 0 ? -1 : 0;
    }
    int rc = attr_true(handler, s_dl_filters);
    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    PyObject *formatter = plain_attr(handler, s_dl_formatter);
    if (formatter == NULL) {
        return -1;
    }
    if ((rc = PyObject_IsTrue(formatter)) <= 0) {
        Py_DECREF(formatter);
        if (rc < 0) {
            return -1;
        }
        formatter = Py_XNewRef(PyDict_GetItemWithError(c->own, s_dl_default_formatter));
        if (formatter == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetObject(PyExc_AttributeError, s_dl_default_formatter);
            }
            return -1;
        }
    }
    int plain = 0;
    if (Py_TYPE(formatter) == c->formatter) {
        PyObject *style = plain_attr(formatter, s_dl_style);
        if (style == NULL) {
            Py_DECREF(formatter);
            return -1;
        }
        if (Py_TYPE(style) == c->style) {
            PyObject *fmt = plain_attr(style, s_dl_fmt);
            plain = fmt ? PyObject_RichCompareBool(fmt, s_dl_message_fmt, Py_EQ) : -1;
            Py_XDECREF(fmt);
        }
        Py_DECREF(style);
    }
    Py_DECREF(formatter);
    if (plain <= 0) {
        return plain;
    }
    PyObject *found = plain_attr(handler, s_dl_lock);
    if (found == NULL) {
        return -1;
    }
    if (Py_TYPE(found) != g_rlock_type) {
        Py_DECREF(found);
        return 0;
    }
    *lock = found;
    return 1;
}

/* the line's record, made the first time it is needed: 0 or -1 */
static int
need_record(PyObject *make_record, PyObject *message, PyObject **record)
{
    if (*record == NULL) {
        *record = PyObject_CallOneArg(make_record, message);
    }
    return *record ? 0 : -1;
}

/* handler.<method>(record): 0 or -1 */
static int
call_with_record(PyObject *handler, PyObject *method, PyObject *record)
{
    PyObject *r = PyObject_CallMethodOneArg(handler, method, record);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* StreamHandler.emit's write and flush: 0, or -1 with the exception set */
static int
write_line(PyObject *handler, PyObject *stream, PyObject *message)
{
    PyObject *terminator = plain_attr(handler, s_dl_terminator);
    if (terminator == NULL) {
        return -1;
    }
    PyObject *text = PyNumber_Add(message, terminator);
    Py_DECREF(terminator);
    if (text == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(stream, s_dl_write, text);
    Py_DECREF(text);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    int rc = PyObject_IsTrue(stream);
    if (rc <= 0) {
        return rc;
    }
    PyObject *flush;
    if (lookup_attr(stream, s_dl_flush, &flush) < 0) {
        /* hasattr() lets every exception but AttributeError through */
        return -1;
    }
    if (flush == NULL) {
        return 0;
    }
    r = PyObject_CallNoArgs(flush);
    Py_DECREF(flush);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* The exception set is handed to handler.handleError(record) as the one being
 * handled (sys.exc_info(), which handleError reads), with the caller's frame in
 * its traceback, as an ``except`` in the reference would have it. 0 or -1. */
static int
handle_error(PyObject *handler, PyObject *make_record, PyObject *message, PyObject **record)
{
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame != NULL) {
        PyTraceBack_Here(frame);
    }
    PyObject *exc = take_exc();
    PyObject *previous = PyErr_GetHandledException();
    PyErr_SetHandledException(exc);
    int rc = need_record(make_record, message, record);
    if (rc == 0) {
        rc = call_with_record(handler, s_dl_handle_error, *record);
    }
    PyErr_SetHandledException(previous);
    Py_XDECREF(previous);
    Py_XDECREF(exc);
    return rc;
}

/* One plain handler's line, under its lock (Handler.handle, FileHandler.emit,
 * StreamHandler.emit; ``lock``, the handler's, is the caller's reference, released
 * here): 1 written (the write went through, or FileHandler.emit was called), 0 not
 * (the write failed: handleError had it), -1 */
static int
deliver_plain(PyObject *handler, PyObject *lock, logging_classes *c, PyObject *message,
              PyObject *make_record, PyObject **record)
{
    PyObject *r = PyObject_CallMethodNoArgs(lock, s_dl_acquire);
    if (r == NULL) {
        Py_DECREF(lock);
        return -1;
    }
    Py_DECREF(r);
    int rc = -1;
    PyObject *stream = plain_attr(handler, s_dl_stream);
    if (stream == NULL) {
        goto release;
    }
    if (Py_TYPE(handler) == c->file) {
        int open = PyObject_IsTrue(stream);
        if (open < 0) {
            goto release;
        }
        if (!open) { /* closed or delayed: FileHandler.emit opens it (or not) */
            if (need_record(make_record, message, record) == 0 &&
                call_with_record(handler, s_dl_emit, *record) == 0) {
                rc = 1;
            }
            goto release;
        }
    }
    rc = write_line(handler, stream, message);
    if (rc == 0) {
        rc = 1;
    }
    else if (!PyErr_ExceptionMatches(PyExc_RecursionError) &&
             PyErr_ExceptionMatches(PyExc_Exception)) {
        rc = handle_error(handler, make_record, message, record);
    }
release:
    Py_XDECREF(stream);
    {
        /* released whatever happened, an exception kept aside meanwhile */
        saved_exc s;
        save_exc(&s);
        r = PyObject_CallMethodNoArgs(lock, s_dl_release);
        Py_DECREF(lock);
        if (r == NULL) {
            drop_exc(&s);
            return -1;
        }
        Py_DECREF(r);
        restore_exc(&s);
    }
    return rc;
}

/* Whether a handler of the walk wrote the line (the reference's `wrote`). */
#define WROTE_NO 0
#define WROTE_YES 1
#define WROTE_UNKNOWN 2

/* A non-plain handler's handle(record) returned `took` (not known to be written
 * yet): what that says of the line, as the reference reads it. handle is
 * Handler.handle (none set on the handler itself): WROTE_YES when `took` is
 * true (its filters let the record through, emit was called), else `wrote`;
 * NullHandler's (logging's own): `wrote`; any other: WROTE_UNKNOWN. -1 error.
 * (Only for handlers that are not plain: their handle costs far more.) */
static Py_NO_INLINE int
handler_took(PyObject *handler, PyObject *took, logging_classes *c, int wrote)
{
    PyObject *handle = _PyType_Lookup(Py_TYPE(handler), s_dl_handle);
    PyTypeObject *base = logging_type(c->own, s_dl_handler_cls);
    int own = handle != NULL && base != NULL && handle == _PyType_Lookup(base, s_dl_handle);
    if (!own) {
        if (PyErr_Occurred()) {
            return -1;
        }
        PyTypeObject *null = logging_type(c->own, s_dl_null_handler);
        if (null == NULL || handle == NULL || handle != _PyType_Lookup(null, s_dl_handle) ||
            !logging_method(null, s_dl_handle, c->own)) {
            return PyErr_Occurred() ? -1 : WROTE_UNKNOWN;
        }
    }
    /* "handle" set on the handler itself (then called instead): not known */
    PyObject *dict = NULL;
#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
    SharedKeys *keys = NULL;
    Py_ssize_t capacity = 0;
    PyObject **values = handler_values(handler, Py_TYPE(handler), &keys, &capacity);
    if (values != NULL) {
        Py_ssize_t ix = probe_keys(keys, s_dl_handle, NULL);
        if (ix >= 0 && (ix >= capacity || values[ix] != NULL)) {
            return WROTE_UNKNOWN;
        }
        if (ix == -1) {
            goto set;
        }
        /* -2, not known here: the dict below */
    }
#endif
    dict = existing_dict(handler);
    if (dict != NULL) {
        int rc = PyDict_Contains(dict, s_dl_handle);
        if (rc != 0) {
            return rc < 0 ? -1 : WROTE_UNKNOWN;
        }
    }
#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
set:
#endif
    if (!own) {
        return wrote; /* a NullHandler writes nothing */
    }
    int rc = PyObject_IsTrue(took);
    return rc < 0 ? -1 : rc ? WROTE_YES : wrote;
}

/* take_failure in the reference: the exception of the last walk of deliver_line
 * that raised and whether a handler had written the line before (WROTE_), kept
 * until take_failure() takes them. */
static PyObject *g_failed_exc;
static int g_failed_wrote;

/* The walk raised (the exception is set, and stays set): remember it. */
static Py_NO_INLINE void
note_failure(int wrote)
{
    PyObject *exc = take_exc(); /* normalized, with its traceback */
    if (exc == NULL) {
        return;
    }
    Py_XSETREF(g_failed_exc, Py_NewRef(exc));
    g_failed_wrote = wrote;
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

static PyObject *
py_take_failure(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    PyObject *exc = g_failed_exc;
    if (exc == NULL) {
        Py_RETURN_NONE;
    }
    g_failed_exc = NULL;
    PyObject *wrote = g_failed_wrote == WROTE_UNKNOWN ? Py_None
                      : g_failed_wrote == WROTE_YES   ? Py_True
                                                      : Py_False;
    return Py_BuildValue("(NO)", exc, wrote);
}

static PyObject *
py_deliver_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4 || !PyModule_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "deliver_line(logger, message, make_record, logging)");
        return NULL;
    }
    PyObject *logger = args[0], *message = args[1], *make_record = args[2];
    logging_classes classes;
    if (get_logging_classes(args[3], &classes) < 0) {
        return NULL;
    }
    PyObject *record = NULL, *current = NULL, *handlers = NULL, *iter = NULL, *handler = NULL;
    int rc = attr_true(logger, s_dl_filters);
    if (rc < 0) {
        return NULL;
    }
    if (rc || !logging_own(Py_TYPE(logger), &classes)) {
        /* filters, or a method that is not logging's: the logger's own handle */
        if (need_record(make_record, message, &record) < 0) {
            return NULL;
        }
        rc = call_with_record(logger, s_dl_handle, record);
        Py_DECREF(record);
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    Py_ssize_t found = 0;
    int wrote = WROTE_NO;
    current = Py_NewRef(logger);
    for (;;) {
        int alive = PyObject_IsTrue(current);
        if (alive < 0) {
            goto error;
        }
        if (!alive) {
            break;
        }
        if ((handlers = plain_attr(current, s_dl_handlers)) == NULL ||
            (iter = PyObject_GetIter(handlers)) == NULL) {
            goto error;
        }
        while ((handler = PyIter_Next(iter)) != NULL) {
            found++;
            PyObject *level = plain_attr(handler, s_dl_level);
            if (level == NULL) {
                goto error;
            }
            int below = PyObject_RichCompareBool(level, g_info_level, Py_GT);
            Py_DECREF(level);
            if (below < 0) {
                goto error;
            }
            if (!below) {
                PyObject *lock = NULL;
                int plain = plain_handler(handler, &classes, &lock);
                if (plain < 0) {
                    goto error;
                }
                if (plain) {
                    int written =
                        deliver_plain(handler, lock, &classes, message, make_record, &record);
                    if (written < 0) {
                        goto error;
                    }
                    if (written) {
                        wrote = WROTE_YES;
                    }
                }
                else {
                    if (need_record(make_record, message, &record) < 0) {
                        goto error;
                    }
                    PyObject *took = PyObject_CallMethodOneArg(handler, s_dl_handle, record);
                    if (took == NULL) {
                        goto error;
                    }
                    if (wrote != WROTE_YES) {
                        int now = handler_took(handler, took, &classes, wrote);
                        if (now < 0) {
                            Py_DECREF(took);
                            goto error;
                        }
                        wrote = now;
                    }
                    Py_DECREF(took);
                }
            }
            Py_CLEAR(handler);
        }
        if (PyErr_Occurred()) {
            goto error;
        }
        Py_CLEAR(iter);
        Py_CLEAR(handlers);
        int propagate = attr_true(current, s_dl_propagate);
        if (propagate < 0) {
            goto error;
        }
        PyObject *next = propagate ? plain_attr(current, s_dl_parent) : Py_NewRef(Py_None);
        if (next == NULL) {
            goto error;
        }
        Py_SETREF(current, next);
    }
    Py_CLEAR(current);
    if (!found) { /* lastResort, or the one-time "no handlers" warning */
        if (need_record(make_record, message, &record) < 0 ||
            call_with_record(logger, s_dl_call_handlers, record) < 0) {
            goto error;
        }
    }
    Py_XDECREF(record);
    Py_RETURN_NONE;
error:
    note_failure(wrote);
    Py_XDECREF(handler);
    Py_XDECREF(iter);
    Py_XDECREF(handlers);
    Py_XDECREF(current);
    Py_XDECREF(record);
    return NULL;
}

/* --- A streaming body's steps, each in its request's scope -------------------------------
 * steps_in_scope(var, iterator, value[, first_failed]): an iterator whose every
 * step is next(iterator) with var set to value around it (see
 * hopwatch._django_scope._read_steps_in_scope). Once the iterator has ended or
 * raised, it is let go and every later step ends at once, as a generator's.
 * With first_failed (not None), first_failed(value) is called when the first step
 * raises an Exception (not StopIteration), before it propagates: the object is
 * then a StepsInScopeFirst until its first step, a StepsInScope after it (its type
 * changed there), so the later steps run Steps_next alone, as without it. */

typedef struct {
    PyObject_HEAD
    PyObject *var;
    PyObject *iterator; /* NULL once ended */
    PyObject *value;
    PyObject *first_failed; /* NULL unless given, and after the first step */
    char running;           /* a step is under way: another one is refused, as a generator's */
} StepsObject;

static PyTypeObject StepsType;

static PyObject *
Steps_next(StepsObject *s)
{
    if (s->iterator == NULL) {
        return NULL;
    }
    if (s->running) { /* stepped again from within its own step: as a generator says */
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return NULL;
    }
    PyObject *token = PyContextVar_Set(s->var, s->value);
    if (token == NULL) {
        return NULL;
    }
    PyObject *it = s->iterator;
    Py_INCREF(it);
    s->running = 1;
    PyObject *item = Py_TYPE(it)->tp_iternext(it);
    s->running = 0;
    Py_DECREF(it);
    saved_exc saved;
    save_exc(&saved);
    int failed = PyContextVar_Reset(s->var, token);
    Py_DECREF(token);
    if (failed < 0) {
        drop_exc(&saved);
        Py_XDECREF(item);
        return NULL;
    }
    restore_exc(&saved);
    if (item == NULL) { /* ended (no error, or StopIteration) or raised */
        Py_CLEAR(s->iterator);
        Py_CLEAR(s->value);
    }
    return item;
}

/* The first step of a StepsInScopeFirst: Steps_next, then a plain StepsInScope. */
static PyObject *
StepsFirst_next(StepsObject *s)
{
    if (s->running) { /* from within its first step: refused, and that step is still first */
        return Steps_next(s);
    }
    PyObject *value = Py_XNewRef(s->value); /* Steps_next lets it go when it raises */
    PyObject *item = Steps_next(s);
    PyObject *hook = s->first_failed;
    s->first_failed = NULL;
    Py_SET_TYPE(s, &StepsType); /* same layout and slots but tp_iternext; both static */
    if (item == NULL && hook != NULL && value != NULL && PyErr_Occurred() &&
        PyErr_ExceptionMatches(PyExc_Exception) &&
        !PyErr_ExceptionMatches(PyExc_StopIteration)) {
        saved_exc saved;
        save_exc(&saved);
        PyObject *r = PyObject_CallOneArg(hook, value);
        if (r == NULL) {
            report_error("steps_in_scope (first_failed)");
        }
        Py_XDECREF(r);
        restore_exc(&saved);
    }
    Py_XDECREF(hook);
    Py_XDECREF(value);
    return item;
}

static int
Steps_traverse(StepsObject *s, visitproc visit, void *arg)
{
    Py_VISIT(s->var);
    Py_VISIT(s->iterator);
    Py_VISIT(s->value);
    Py_VISIT(s->first_failed);
    return 0;
}

static int
Steps_clear(StepsObject *s)
{
    Py_CLEAR(s->var);
    Py_CLEAR(s->iterator);
    Py_CLEAR(s->value);
    Py_CLEAR(s->first_failed);
    return 0;
}

static void
Steps_dealloc(StepsObject *s)
{
    PyObject_GC_UnTrack(s);
    Steps_clear(s);
    PyObject_GC_Del(s);
}

static PyTypeObject StepsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.StepsInScope",
    .tp_basicsize = sizeof(StepsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A streaming body's iterator, each step taken in its request's scope.",
    .tp_dealloc = (destructor)Steps_dealloc,
    .tp_traverse = (traverseproc)Steps_traverse,
    .tp_clear = (inquiry)Steps_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Steps_next,
};

static PyTypeObject StepsFirstType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.StepsInScopeFirst",
    .tp_basicsize = sizeof(StepsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A streaming body's iterator before its first step (then a StepsInScope).",
    .tp_dealloc = (destructor)Steps_dealloc,
    .tp_traverse = (traverseproc)Steps_traverse,
    .tp_clear = (inquiry)Steps_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)StepsFirst_next,
};

static PyObject *
py_steps_in_scope(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "steps_in_scope(var, iterator, value[, first_failed])");
        return NULL;
    }
    if (!PyIter_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "'%.200s' object is not an iterator",
                     Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    PyObject *first_failed = nargs == 4 && args[3] != Py_None ? args[3] : NULL;
    StepsObject *s =
        PyObject_GC_New(StepsObject, first_failed != NULL ? &StepsFirstType : &StepsType);
    if (s == NULL) {
        return NULL;
    }
    s->var = Py_NewRef(args[0]);
    s->iterator = Py_NewRef(args[1]);
    s->value = Py_NewRef(args[2]);
    s->first_failed = Py_XNewRef(first_failed);
    s->running = 0;
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

/* --- A method wrapped around without a frame of its own ---------------------------------
 * around(before, original, after): a callable that binds as a method. A call
 * runs state = before(*args); None: original(*args, **kwargs) alone; else the
 * original's call, then after(args[0], state) whether it returned or raised
 * (an error of after's is its own to report: it must not raise). No Python
 * frame of hopwatch's is on the stack while the original runs, so a warning it
 * gives with a stacklevel names its caller's line, as without hopwatch
 * (Django's StreamingHttpResponse.__iter__). Other attributes are the original's. */

typedef struct {
    PyObject_HEAD
    PyObject *before;
    PyObject *original;
    PyObject *after;
    vectorcallfunc vectorcall;
} AroundObject;

static PyObject *
Around_vectorcall(AroundObject *a, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        return PyObject_Vectorcall(a->original, args, nargsf, kwnames);
    }
    PyObject *state = PyObject_Vectorcall(a->before, args, nargs, NULL);
    if (state == NULL) {
        return NULL;
    }
    if (state == Py_None) {
        Py_DECREF(state);
        return PyObject_Vectorcall(a->original, args, nargsf, kwnames);
    }
    PyObject *result = PyObject_Vectorcall(a->original, args, nargsf, kwnames);
    saved_exc saved;
    save_exc(&saved);
    PyObject *after_args[2] = {args[0], state};
    PyObject *r = PyObject_Vectorcall(a->after, after_args, 2, NULL);
    Py_DECREF(state);
    if (r == NULL) { /* after raised after all: that error wins */
        drop_exc(&saved);
        Py_XDECREF(result);
        return NULL;
    }
    Py_DECREF(r);
    restore_exc(&saved);
    return result;
}

static PyObject *
Around_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
Around_getattro(AroundObject *a, PyObject *name)
{
    PyObject *v = PyObject_GenericGetAttr((PyObject *)a, name);
    if (v != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return v;
    }
    PyErr_Clear();
    return PyObject_GetAttr(a->original, name);
}

static PyObject *
Around_get_doc(AroundObject *a, void *closure)
{
    (void)closure;
    return PyObject_GetAttrString(a->original, "__doc__");
}

static PyObject *
Around_repr(AroundObject *a)
{
    return PyUnicode_FromFormat("<hopwatch around %R>", a->original);
}

static PyMemberDef Around_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(AroundObject, original), READONLY, NULL},
    {NULL},
};

static PyGetSetDef Around_getset[] = {
    {"__doc__", (getter)Around_get_doc, NULL, NULL, NULL},
    {NULL},
};

static int
Around_traverse(AroundObject *a, visitproc visit, void *arg)
{
    Py_VISIT(a->before);
    Py_VISIT(a->original);
    Py_VISIT(a->after);
    return 0;
}

static int
Around_clear(AroundObject *a)
{
    Py_CLEAR(a->before);
    Py_CLEAR(a->original);
    Py_CLEAR(a->after);
    return 0;
}

static void
Around_dealloc(AroundObject *a)
{
    PyObject_GC_UnTrack(a);
    Around_clear(a);
    PyObject_GC_Del(a);
}

static PyTypeObject AroundType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwatch._speedups.Around",
    .tp_basicsize = sizeof(AroundObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = NULL,
    .tp_dealloc = (destructor)Around_dealloc,
    .tp_traverse = (traverseproc)Around_traverse,
    .tp_clear = (inquiry)Around_clear,
    .tp_vectorcall_offset = offsetof(AroundObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = Around_descr_get,
    .tp_getattro = (getattrofunc)Around_getattro,
    .tp_members = Around_members,
    .tp_getset = Around_getset,
    .tp_repr = (reprfunc)Around_repr,
};

static PyObject *
py_around(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "around(before, original, after)");
        return NULL;
    }
    AroundObject *a = PyObject_GC_New(AroundObject, &AroundType);
    if (a == NULL) {
        return NULL;
    }
    a->before = Py_NewRef(args[0]);
    a->original = Py_NewRef(args[1]);
    a->after = Py_NewRef(args[2]);
    a->vectorcall = (vectorcallfunc)Around_vectorcall;
    PyObject_GC_Track(a);
    return (PyObject *)a;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))py_configure, METH_VARARGS | METH_KEYWORDS,
     "Hand the hop path its collaborators (see hopwatch._hotpath)."},
    {"set_active", py_set_active, METH_O, "Turn recording on or off (the patches stay)."},
    {"set_thread_hook", py_set_thread_hook, METH_O, "Install or remove the per-hop thread hook."},
    {"finish_hop", finish_hop, METH_O, "Account a finished hop to its scope."},
    {"attribute", (PyCFunction)(void (*)(void))py_attribute, METH_FASTCALL,
     "attribute(adapter, target, frame) -> Cause, through the caches."},
    {"clear_caches", py_clear_caches, METH_NOARGS, "Forget every cached attribution."},
    {"then", (PyCFunction)(void (*)(void))py_then, METH_FASTCALL,
     "then(awaitable, fn, a, b, start=None): await it, then fn(a, b, result) (see ThenType)."},
    {"fill_log_record", (PyCFunction)(void (*)(void))py_fill_log_record, METH_FASTCALL,
     "fill_log_record(record, constant, message, clock, logging): a line's LogRecord fields."},
    {"enter_scope", (PyCFunction)(void (*)(void))py_enter_scope, METH_FASTCALL,
     "enter_scope(var, ledger) -> token: ledger becomes the scope, inside the current one."},
    {"find_scope", (PyCFunction)(void (*)(void))py_find_scope, METH_FASTCALL,
     "find_scope(var, cls): the innermost current scope that is a cls, or None."},
    {"scope_value", (PyCFunction)py_scope_value, METH_O,
     "scope_value(var): var's value, or the record on the request's ThreadSensitiveContext"},
    {"start_request", (PyCFunction)(void (*)(void))py_start_request, METH_FASTCALL,
     "start_request(var, cls, interface, scope) -> record | None: an async handler's begin."},
    {"begin_request", (PyCFunction)(void (*)(void))py_begin_request, METH_FASTCALL,
     "begin_request(var, cls, request, meta_key, ids) -> record | None: the middleware's begin."},
    {"name_request", (PyCFunction)(void (*)(void))py_name_request, METH_FASTCALL,
     "name_request(cache, names_of, record, request, response): the middleware's naming."},
    {"deliver_line", (PyCFunction)(void (*)(void))py_deliver_line, METH_FASTCALL,
     "deliver_line(logger, message, make_record, logging): logger.handle for one INFO line."},
    {"take_failure", (PyCFunction)py_take_failure, METH_NOARGS,
     "take_failure(): (exception, whether a handler wrote the line before: True, False, None "
     "when not known) of the last failed deliver_line walk, or None."},
    {"steps_in_scope", (PyCFunction)(void (*)(void))py_steps_in_scope, METH_FASTCALL,
     "steps_in_scope(var, iterator, value[, first_failed]): iterator's steps, each with var"
     " set to value; first_failed(value) if the first step raises."},
    {"around", (PyCFunction)(void (*)(void))py_around, METH_FASTCALL,
     "around(before, original, after): original with before/after, no frame of its own."},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hopwatch._speedups",
    .m_doc = "hopwatch's hop path in C (see hopwatch._hotpath_py for the reference).",
    .m_size = -1,
    .m_methods = module_methods,
};

#define INTERN(var, text)                                                                     \
    do {                                                                                      \
        var = PyUnicode_InternFromString(text);                                               \
        if (var == NULL) {                                                                    \
            return NULL;                                                                      \
        }                                                                                     \
    } while (0)

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_sync_to_async, "sync_to_async");
    INTERN(s_r_method, "method");
    INTERN(s_r_route, "route");
    INTERN(s_r_view, "view");
    INTERN(s_r_status, "status");
    INTERN(s_r_interface, "interface");
    INTERN(s_r_request_id, "request_id");
    INTERN(s_r_started_ns, "started_ns");
    INTERN(s_r_ended_ns, "ended_ns");
    INTERN(s_r_handler_thread_id, "handler_thread_id");
    INTERN(s_r_extra, "extra");
    INTERN(s_async_to_sync, "async_to_sync");
    INTERN(s_ok, "ok");
    INTERN(s_error, "error");
    INTERN(s_cancelled, "cancelled");
    INTERN(s_func, "func");
    INTERN(s_thread_handler, "thread_handler");
    INTERN(s_call, "__call__");
    INTERN(s_awaitable, "awaitable");
    INTERN(s_thread_sensitive, "_thread_sensitive");
    INTERN(s_tag, "_hopwatch_cause");
    INTERN(s_dict, "__dict__");
    INTERN(s_dl_filters, "filters");
    INTERN(s_dl_handlers, "handlers");
    INTERN(s_dl_level, "level");
    INTERN(s_dl_formatter, "formatter");
    INTERN(s_dl_style, "_style");
    INTERN(s_dl_fmt, "_fmt");
    INTERN(s_dl_lock, "lock");
    INTERN(s_dl_stream, "stream");
    INTERN(s_dl_terminator, "terminator");
    INTERN(s_dl_write, "write");
    INTERN(s_dl_flush, "flush");
    INTERN(s_dl_emit, "emit");
    INTERN(s_dl_handle, "handle");
    INTERN(s_dl_handle_error, "handleError");
    INTERN(s_dl_call_handlers, "callHandlers");
    INTERN(s_dl_parent, "parent");
    INTERN(s_dl_propagate, "propagate");
    INTERN(s_dl_acquire, "acquire");
    INTERN(s_dl_release, "release");
    INTERN(s_dl_message_fmt, "%(message)s");
    INTERN(s_dl_file_handler, "FileHandler");
    INTERN(s_dl_stream_handler, "StreamHandler");
    INTERN(s_dl_formatter_cls, "Formatter");
    INTERN(s_dl_percent_style, "PercentStyle");
    INTERN(s_dl_log_record, "LogRecord");
    INTERN(s_dl_default_formatter, "_defaultFormatter");
    INTERN(s_dl_filter, "filter");
    INTERN(s_dl_format, "format");
    INTERN(s_dl_format_message, "formatMessage");
    INTERN(s_dl_uses_time, "usesTime");
    INTERN(s_dl_underscore_format, "_format");
    INTERN(s_dl_get_message, "getMessage");
    INTERN(s_dl_handler_cls, "Handler");
    INTERN(s_dl_null_handler, "NullHandler");
    {
        PyObject *thread = PyImport_ImportModule("_thread");
        if (thread == NULL) {
            return NULL;
        }
        g_rlock_type = (PyTypeObject *)PyObject_GetAttrString(thread, "RLock");
        Py_DECREF(thread);
        if (g_rlock_type == NULL) {
            return NULL;
        }
    }
    INTERN(s_force_new_loop, "force_new_loop");
    INTERN(s_thread_id, "_thread_id");
    INTERN(s_executor, "_executor");
    INTERN(s_main_event_loop, "main_event_loop");
    INTERN(s_main_event_loop_pid, "main_event_loop_pid");
    INTERN(s_throw, "throw");
    INTERN(s_close, "close");
    INTERN(s_site, "site");
    INTERN(s_kind, "kind");
    INTERN(s_view, "view");
    INTERN(s_call_site, "call_site");
    INTERN(s_direction, "direction");
    INTERN(s_count, "count");
    INTERN(s_ms, "ms");
    INTERN(s_overhead_ms, "overhead_ms");
    INTERN(s_lr_msg, "msg");
    INTERN(s_lr_levelname, "levelname");
    INTERN(s_lr_created, "created");
    INTERN(s_lr_msecs, "msecs");
    INTERN(s_lr_relative, "relativeCreated");
    INTERN(s_lr_thread, "thread");
    INTERN(s_lr_thread_name, "threadName");
    INTERN(s_lr_process_name, "processName");
    INTERN(s_lr_process, "process");
    INTERN(s_lr_task_name, "taskName");
    INTERN(s_lg_start_time, "_startTime");
    INTERN(s_lg_log_threads, "logThreads");
    INTERN(s_lg_log_mp, "logMultiprocessing");
    INTERN(s_lg_log_processes, "logProcesses");
    INTERN(s_lg_log_tasks, "logAsyncioTasks");
    INTERN(s_lg_level_to_name, "_levelToName");
    INTERN(s_lg_get_level_name, "getLevelName");
    INTERN(s_lg_threading, "threading");
    INTERN(s_current_thread, "current_thread");
    INTERN(s_name, "name");
    INTERN(s_current_process, "current_process");
    INTERN(s_current_task, "current_task");
    INTERN(s_get_name, "get_name");
    INTERN(s_multiprocessing, "multiprocessing");
    INTERN(s_asyncio, "asyncio");
    INTERN(s_main_process, "MainProcess");
    INTERN(s_mw_path, "path");
    INTERN(s_scope_token, "scope_token");
    INTERN(s_get, "get");
    INTERN(s_record, "record");
    INTERN(s_mw_meta, "META");
    INTERN(s_mw_getrandbits, "getrandbits");
    INTERN(s_mw_resolver_match, "resolver_match");
    INTERN(s_mw_route, "route");
    INTERN(s_mw_status_code, "status_code");
    INTERN(s_mw_request, "request");
    INTERN(s_mw_empty, "");
    g_bits64 = PyLong_FromLong(64);
    if (g_bits64 == NULL) {
        return NULL;
    }
    g_info_level = PyLong_FromLong(20);
    if (g_info_level == NULL) {
        return NULL;
    }
    g_stale_callback = PyCFunction_New(&g_stale_def, NULL);
    if (g_stale_callback == NULL) {
        return NULL;
    }
    g_cause_json = PyDict_New();
    g_cause_keys[0] = PyDict_New();
    g_cause_keys[1] = PyDict_New();
    if (g_cause_json == NULL || g_cause_keys[0] == NULL || g_cause_keys[1] == NULL) {
        return NULL;
    }
    if (PyType_Ready(&HopType) < 0 || PyType_Ready(&LedgerCoreType) < 0 ||
        PyType_Ready(&CauseStatsType) < 0 ||
        PyType_Ready(&HopAwaitableType) < 0 || PyType_Ready(&PatchType) < 0 ||
        PyType_Ready(&ThenType) < 0 ||
        PyType_Ready(&BoundHandlerType) < 0 || PyType_Ready(&StepsType) < 0 ||
        PyType_Ready(&StepsFirstType) < 0 ||
        PyType_Ready(&AroundType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    find_map_set();
    if (PyModule_AddObjectRef(m, "Hop", (PyObject *)&HopType) < 0 ||
        PyModule_AddObjectRef(m, "LedgerCore", (PyObject *)&LedgerCoreType) < 0 ||
        PyModule_AddObjectRef(m, "CauseStats", (PyObject *)&CauseStatsType) < 0 ||
        PyModule_AddObjectRef(m, "HopAwaitable", (PyObject *)&HopAwaitableType) < 0 ||
        PyModule_AddObjectRef(m, "Patch", (PyObject *)&PatchType) < 0 ||
        PyModule_AddIntConstant(m, "S2A_CALL", P_S2A_CALL) < 0 ||
        PyModule_AddIntConstant(m, "A2S_CALL", P_A2S_CALL) < 0 ||
        PyModule_AddIntConstant(m, "THREAD_HANDLER", P_THREAD_HANDLER) < 0 ||
        PyModule_AddIntConstant(m, "MAIN_WRAP", P_MAIN_WRAP) < 0 ||
        PyModule_AddIntConstant(m, "MODE_FINAL", MODE_FINAL) < 0 ||
        PyModule_AddIntConstant(m, "MODE_USER", MODE_USER) < 0 ||
        PyModule_AddIntConstant(m, "MODE_ASK", MODE_ASK) < 0 ||
        /* Whether run_context sets the scope variable in the mapping (find_map_set). */
        PyModule_AddIntConstant(m, "CONTEXT_MAP_SET", MAP_SET_FOUND) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
