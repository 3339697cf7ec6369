/*
 * globalnet._gnetcrypto -- the per-chunk crypto hot path in C (OpenSSL EVP).
 *
 * Theory of operation
 * -------------------
 * Same API and semantics as the pure-Python reference
 * globalnet/crypto/layers.py (which uses the `cryptography` package); both
 * pass the same test vectors (tests/test_cext.py checks this module against
 * `cryptography` directly).
 *
 * Keystream: one direction of one bridge layer (DESIGN.md, Circuits, 3.).
 *   ChaCha20 (RFC 8439: 32-byte key, 12-byte nonce, 32-bit block counter
 *   starting at 0) XORed over a byte stream. One EVP_CIPHER_CTX per object:
 *   EVP's chacha20 keeps the unused tail of the last keystream block, so a
 *   call that ends mid-block is continued byte-exactly by the next call, like
 *   a stateful `cryptography` encryptor. The EVP IV is 16 bytes: the 4-byte
 *   little-endian block counter, then the 12-byte nonce. A Keystream refuses
 *   to go past MAX_KEYSTREAM_BYTES (64 * 2**32): the 32-bit counter would
 *   wrap there (OpenSSL would carry into the nonce; `cryptography` too) and
 *   reuse of keystream is the one thing a stream cipher must never do.
 *
 * xor_layers(layers, buf): the client's stack of k XOR layers in one call;
 *   every argument is checked (types, busy objects, positions including the
 *   same layer listed twice) before any byte of buf or any position changes.
 *
 * AeadSealer / AeadOpener: the sending / receiving half of a Noise
 *   CipherState with ChaChaPoly: ChaCha20-Poly1305 IETF, nonce = 4 zero
 *   bytes || 8-byte little-endian counter n (from 0), empty associated data,
 *   output ciphertext || 16-byte tag. One EVP ctx per object holding the key;
 *   every message re-inits it with the new nonce only. As in the Noise spec
 *   (5.1), n = 2**64 - 1 is never used. The _many variants check every item
 *   before touching the counter, so a TypeError leaves the object as it was.
 *   An opener that fails to decrypt (input shorter than the tag, bad tag,
 *   nonces exhausted) is failed for good: every later call raises
 *   DecryptError, since a stream with a forged or lost frame cannot be
 *   resynchronised.
 *
 * Threads: work on at least GIL_RELEASE_THRESHOLD bytes runs without the GIL.
 *   The Py_buffer views are held throughout (a bytearray cannot be resized
 *   while exported), the layers are held in a private tuple, and each object
 *   is marked busy so that a second thread using the same object at the same
 *   time gets a RuntimeError instead of racing on the EVP context.
 *
 * malloc_trim(pad): glibc's malloc_trim, for globalnet/node/memory.py (a node
 *   hands freed heap back after start-up and after bursts of traffic). Here
 *   because this is the node's one C module: through ctypes the call would
 *   load ctypes and libffi, about 0.3 MiB of every node, for one function.
 *   Only built against glibc (elsewhere the module has no malloc_trim).
 *
 * mallopt(param, value): glibc's mallopt, for the same module: a node fixes
 *   the heap's mmap and trim thresholds at start so that traffic does not
 *   grow and shrink the heap (page faults) between its bursts. Glibc only.
 *
 * Written against the limited C API of Python 3.11 (abi3), heap types,
 * multi-phase module init with per-module state.
 */

#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>

#ifdef __GLIBC__ /* defined by the headers above on glibc */
#include <malloc.h>
#endif

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>


#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define BLOCK_LEN 64
#define MAX_KEYSTREAM_BYTES (((unsigned long long)BLOCK_LEN) << 32)
#define GIL_RELEASE_THRESHOLD 4096
/* EVP_*Update take an int length. */
#define EVP_CHUNK (1 << 30)
/* Noise transport messages are at most 65535 bytes, tag included (spec
 * section 3); layers.py has the same bound. */
#define MAX_AEAD_MESSAGE_LEN 65535
#define MAX_AEAD_PLAINTEXT (MAX_AEAD_MESSAGE_LEN - TAG_LEN)

typedef struct {
    PyTypeObject *keystream_type;
    PyTypeObject *sealer_type;
    PyTypeObject *opener_type;
    PyObject *decrypt_error;
} module_state;

static module_state *
state_of_type(PyTypeObject *tp)
{
    return (module_state *)PyType_GetModuleState(tp);
}

/* Free a heap-type instance (no GC: these objects hold no Python refs). */
static void
free_instance(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
alloc_instance(PyTypeObject *tp)
{
    allocfunc tp_alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    return tp_alloc(tp, 0);
}

/* Key argument: exactly KEY_LEN bytes (the buffer is parsed by the caller). */
static int
check_len(const Py_buffer *view, Py_ssize_t want, const char *what)
{
    if (view->len != want) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes, not %zd",
                     what, want, view->len);
        return -1;
    }
    return 0;
}

/* An OpenSSL call failed where it never should: RuntimeError, and drop
 * whatever OpenSSL queued so it cannot confuse a later caller. */
static void
openssl_error(const char *what)
{
    ERR_clear_error();
    PyErr_Format(PyExc_RuntimeError, "OpenSSL: %s failed", what);
}

/* ------------------------------------------------------------------ */
/* Keystream                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;
    unsigned long long position;
    unsigned long long pending; /* scratch for xor_layers validation */
    int busy;                   /* in use by a call that released the GIL */
    int broken;                 /* EVP failed: state unknown, refuse more */
} KeystreamObject;

/* XOR len bytes of keystream over in into out (may alias). No GIL needed. */
static int
stream_xor(EVP_CIPHER_CTX *ctx, unsigned char *out, const unsigned char *in,
           size_t len)
{
    while (len > 0) {
        int n = len > (size_t)EVP_CHUNK ? EVP_CHUNK : (int)len;
        int outl = 0;
        if (EVP_EncryptUpdate(ctx, out, &outl, in, n) != 1 || outl != n)
            return 0;
        out += n;
        in += n;
        len -= (size_t)n;
    }
    return 1;
}

static int
keystream_usable(KeystreamObject *ks)
{
    if (ks->broken) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Keystream is unusable after an OpenSSL failure");
        return 0;
    }
    if (ks->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Keystream is in use by another thread");
        return 0;
    }
    return 1;
}

static int
keystream_room(KeystreamObject *ks, unsigned long long len)
{
    if (len > MAX_KEYSTREAM_BYTES - ks->position) {
        PyErr_Format(PyExc_ValueError,
                     "keystream exhausted: position %llu + %llu bytes would "
                     "pass MAX_KEYSTREAM_BYTES (%llu)",
                     ks->position, len, MAX_KEYSTREAM_BYTES);
        return 0;
    }
    return 1;
}

static PyObject *
Keystream_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key", "nonce", "position", NULL};
    Py_buffer key = {0}, nonce = {0};
    PyObject *position_obj = NULL;
    unsigned long long position = 0;
    unsigned char iv[16];
    unsigned char skip[BLOCK_LEN];
    KeystreamObject *self = NULL;
    EVP_CIPHER_CTX *ctx = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|y*$O:Keystream", kwlist,
                                     &key, &nonce, &position_obj))
        return NULL;
    if (check_len(&key, KEY_LEN, "key") < 0)
        goto error;
    if (nonce.obj != NULL && check_len(&nonce, NONCE_LEN, "nonce") < 0)
        goto error;
    if (position_obj != NULL) {
        int overflow = 0;
        long long value;
        if (!PyLong_Check(position_obj)) {
            PyErr_Format(PyExc_TypeError, "position must be int, not %R",
                         (PyObject *)Py_TYPE(position_obj));
            goto error;
        }
        value = PyLong_AsLongLongAndOverflow(position_obj, &overflow);
        if (value == -1 && PyErr_Occurred())
            goto error;
        if (overflow != 0 || value < 0 ||
            (unsigned long long)value > MAX_KEYSTREAM_BYTES) {
            PyErr_Format(PyExc_ValueError,
                         "position must be in 0..MAX_KEYSTREAM_BYTES, not %R",
                         position_obj);
            goto error;
        }
        position = (unsigned long long)value;
    }

    /* At position == MAX the counter would be 2**32; nothing can be
     * produced there anyway, so its low 32 bits are as good as any. */
    {
        uint32_t counter = (uint32_t)(position / BLOCK_LEN);
        iv[0] = (unsigned char)(counter);
        iv[1] = (unsigned char)(counter >> 8);
        iv[2] = (unsigned char)(counter >> 16);
        iv[3] = (unsigned char)(counter >> 24);
    }
    if (nonce.obj != NULL)
        memcpy(iv + 4, nonce.buf, NONCE_LEN);
    else
        memset(iv + 4, 0, NONCE_LEN);

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if (EVP_EncryptInit_ex(ctx, EVP_chacha20(), NULL,
                           (const unsigned char *)key.buf, iv) != 1) {
        openssl_error("ChaCha20 init");
        goto error;
    }
    /* Skip to the byte within the block. */
    memset(skip, 0, sizeof(skip));
    if (!stream_xor(ctx, skip, skip, (size_t)(position % BLOCK_LEN))) {
        openssl_error("ChaCha20");
        goto error;
    }
    OPENSSL_cleanse(skip, sizeof(skip));

    self = (KeystreamObject *)alloc_instance(type);
    if (self == NULL)
        goto error;
    self->ctx = ctx;
    self->position = position;
    self->pending = 0;
    self->busy = 0;
    self->broken = 0;
    PyBuffer_Release(&key);
    PyBuffer_Release(&nonce);
    return (PyObject *)self;

error:
    EVP_CIPHER_CTX_free(ctx);
    PyBuffer_Release(&key);
    PyBuffer_Release(&nonce);
    return NULL;
}

static void
Keystream_dealloc(PyObject *op)
{
    KeystreamObject *self = (KeystreamObject *)op;
    EVP_CIPHER_CTX_free(self->ctx); /* cleanses the key schedule */
    self->ctx = NULL;
    free_instance(op);
}

/* Apply the keystream to view (in place when out == in). */
static int
keystream_run(KeystreamObject *self, unsigned char *out,
              const unsigned char *in, Py_ssize_t len)
{
    int ok;
    if (len >= GIL_RELEASE_THRESHOLD) {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        ok = stream_xor(self->ctx, out, in, (size_t)len);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    else {
        ok = stream_xor(self->ctx, out, in, (size_t)len);
    }
    if (!ok) {
        self->broken = 1;
        openssl_error("ChaCha20");
        return 0;
    }
    self->position += (unsigned long long)len;
    return 1;
}

PyDoc_STRVAR(Keystream_xor_into_doc,
"xor_into(buf, /)\n--\n\n"
"XOR the keystream into a writable buffer in place, at the current\n"
"position, and advance. TypeError for read-only buffers; ValueError if\n"
"the position would pass MAX_KEYSTREAM_BYTES.");

static PyObject *
Keystream_xor_into(PyObject *op, PyObject *arg)
{
    KeystreamObject *self = (KeystreamObject *)op;
    Py_buffer view;
    int ok;

    if (!PyArg_Parse(arg, "w*:xor_into", &view))
        return NULL;
    ok = keystream_usable(self) &&
         keystream_room(self, (unsigned long long)view.len) &&
         keystream_run(self, (unsigned char *)view.buf,
                       (const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Keystream_xor_doc,
"xor(data, /)\n--\n\n"
"Return a copy of data (any bytes-like object) with the keystream XORed\n"
"in, and advance.");

static PyObject *
Keystream_xor(PyObject *op, PyObject *arg)
{
    KeystreamObject *self = (KeystreamObject *)op;
    Py_buffer view;
    PyObject *result = NULL;

    if (!PyArg_Parse(arg, "y*:xor", &view))
        return NULL;
    if (!keystream_usable(self) ||
        !keystream_room(self, (unsigned long long)view.len))
        goto done;
    result = PyBytes_FromStringAndSize(NULL, view.len);
    if (result == NULL)
        goto done;
    if (!keystream_run(self, (unsigned char *)PyBytes_AsString(result),
                       (const unsigned char *)view.buf, view.len))
        Py_CLEAR(result);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
Keystream_get_position(PyObject *op, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(((KeystreamObject *)op)->position);
}

static PyMethodDef Keystream_methods[] = {
    {"xor_into", Keystream_xor_into, METH_O, Keystream_xor_into_doc},
    {"xor", Keystream_xor, METH_O, Keystream_xor_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Keystream_getset[] = {
    {"position", Keystream_get_position, NULL,
     "Bytes of keystream consumed so far (read-only).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Keystream_doc,
"Keystream(key, nonce=bytes(12), *, position=0)\n--\n\n"
"One direction of one bridge layer: ChaCha20 (RFC 8439: 32-byte key,\n"
"12-byte nonce, 32-bit block counter starting at 0) XORed over a byte\n"
"stream; length-preserving, with a stateful position.\n\n"
"position (keyword only) starts the stream that many bytes in; it exists\n"
"for tests (e.g. near MAX_KEYSTREAM_BYTES) and is not part of the protocol.");

static PyType_Slot Keystream_slots[] = {
    {Py_tp_new, Keystream_new},
    {Py_tp_dealloc, Keystream_dealloc},
    {Py_tp_methods, Keystream_methods},
    {Py_tp_getset, Keystream_getset},
    {Py_tp_doc, (void *)Keystream_doc},
    {0, NULL},
};

static PyType_Spec Keystream_spec = {
    .name = "globalnet._gnetcrypto.Keystream",
    .basicsize = sizeof(KeystreamObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Keystream_slots,
};

/* ------------------------------------------------------------------ */
/* xor_layers                                                          */
/* ------------------------------------------------------------------ */

PyDoc_STRVAR(xor_layers_doc,
"xor_layers(layers, buf, /)\n--\n\n"
"Apply each Keystream in layers, in order, to the writable buffer buf in\n"
"place (the client's stack of layers) in one call. Everything is checked\n"
"before anything is changed.");

static PyObject *
gn_xor_layers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    module_state *st = (module_state *)PyModule_GetState(module);
    PyObject *layers = NULL;
    Py_buffer view = {0};
    Py_ssize_t n, i;
    int ok = 1;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "xor_layers() takes exactly 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    /* A private tuple: the caller's list may change while the GIL is out. */
    layers = PySequence_Tuple(args[0]);
    if (layers == NULL)
        return NULL;
    if (!PyArg_Parse(args[1], "w*:xor_layers", &view))
        goto error;

    n = PyTuple_Size(layers);
    for (i = 0; i < n; i++) {
        PyObject *item = PyTuple_GetItem(layers, i);
        if (!PyObject_TypeCheck(item, st->keystream_type)) {
            PyErr_Format(PyExc_TypeError,
                         "xor_layers() layers[%zd] must be a Keystream, not %R",
                         i, (PyObject *)Py_TYPE(item));
            goto error;
        }
        if (!keystream_usable((KeystreamObject *)item))
            goto error;
        ((KeystreamObject *)item)->pending = 0;
    }
    /* A layer listed twice advances twice: sum per object, then check. */
    for (i = 0; i < n; i++) {
        KeystreamObject *ks = (KeystreamObject *)PyTuple_GetItem(layers, i);
        if (!keystream_room(ks, ks->pending + (unsigned long long)view.len))
            goto error;
        ks->pending += (unsigned long long)view.len;
    }

    if (n > 0 && view.len > 0) {
        unsigned char *buf = (unsigned char *)view.buf;
        size_t len = (size_t)view.len;
        Py_ssize_t failed_at = -1;
        int nogil = (unsigned long long)view.len * (unsigned long long)n >=
                    GIL_RELEASE_THRESHOLD;
        /* The contexts, gathered while we hold the GIL. */
        EVP_CIPHER_CTX **ctxs = PyMem_Malloc(sizeof(EVP_CIPHER_CTX *) * (size_t)n);

        if (ctxs == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        for (i = 0; i < n; i++) {
            KeystreamObject *ks = (KeystreamObject *)PyTuple_GetItem(layers, i);
            ctxs[i] = ks->ctx;
            if (nogil)
                ks->busy = 1;
        }
        if (nogil) {
            Py_BEGIN_ALLOW_THREADS
            for (i = 0; i < n; i++) {
                if (!stream_xor(ctxs[i], buf, buf, len)) {
                    failed_at = i;
                    break;
                }
            }
            Py_END_ALLOW_THREADS
        }
        else {
            for (i = 0; i < n; i++) {
                if (!stream_xor(ctxs[i], buf, buf, len)) {
                    failed_at = i;
                    break;
                }
            }
        }
        PyMem_Free(ctxs);
        for (i = 0; i < n; i++) {
            KeystreamObject *ks = (KeystreamObject *)PyTuple_GetItem(layers, i);
            ks->busy = 0;
            if (failed_at >= 0 && i >= failed_at) {
                if (i == failed_at)
                    ks->broken = 1;
                continue;
            }
            ks->position += (unsigned long long)view.len;
        }
        if (failed_at >= 0) {
            openssl_error("ChaCha20");
            ok = 0;
        }
    }
    PyBuffer_Release(&view);
    Py_DECREF(layers);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;

error:
    PyBuffer_Release(&view);
    Py_DECREF(layers);
    return NULL;
}


/* ------------------------------------------------------------------ */
/* AEAD: AeadSealer / AeadOpener                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;
    uint64_t counter; /* Noise n: the nonce of the next message */
    int busy;
    int failed;       /* opener: a decryption failed; sealer: EVP failed */
} AeadObject;

static void
noise_nonce(unsigned char nonce[NONCE_LEN], uint64_t n)
{
    int i;
    memset(nonce, 0, 4);
    for (i = 0; i < 8; i++)
        nonce[4 + i] = (unsigned char)(n >> (8 * i));
}

/* out gets len + TAG_LEN bytes; len <= MAX_AEAD_PLAINTEXT. No GIL needed. */
static int
aead_seal_one(EVP_CIPHER_CTX *ctx, uint64_t n, const unsigned char *in,
              size_t len, unsigned char *out)
{
    unsigned char nonce[NONCE_LEN];
    int outl = 0;

    noise_nonce(nonce, n);
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1)
        return 0;
    if (len > 0) {
        if (EVP_EncryptUpdate(ctx, out, &outl, in, (int)len) != 1 ||
            (size_t)outl != len)
            return 0;
    }
    /* Final writes nothing for a stream cipher; out + len is scratch. */
    if (EVP_EncryptFinal_ex(ctx, out + len, &outl) != 1 || outl != 0)
        return 0;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN,
                               out + len) == 1;
}

/* in has len >= TAG_LEN bytes; out gets len - TAG_LEN. No GIL needed. */
static int
aead_open_one(EVP_CIPHER_CTX *ctx, uint64_t n, const unsigned char *in,
              size_t len, unsigned char *out)
{
    unsigned char nonce[NONCE_LEN];
    unsigned char tag[TAG_LEN];
    unsigned char final_block[BLOCK_LEN];
    size_t ptlen = len - TAG_LEN;
    int outl = 0;

    noise_nonce(nonce, n);
    memcpy(tag, in + ptlen, TAG_LEN);
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1)
        goto fail;
    if (ptlen > 0) {
        if (EVP_DecryptUpdate(ctx, out, &outl, in, (int)ptlen) != 1 ||
            (size_t)outl != ptlen)
            goto fail;
    }
    if (EVP_DecryptFinal_ex(ctx, final_block, &outl) != 1)
        goto fail;
    return 1;
fail:
    /* Never leave unauthenticated plaintext lying around. */
    OPENSSL_cleanse(out, ptlen);
    ERR_clear_error();
    return 0;
}

static PyObject *
aead_new(PyTypeObject *type, PyObject *args, PyObject *kwds, int enc)
{
    static char *kwlist[] = {"key", NULL};
    Py_buffer key = {0};
    AeadObject *self = NULL;
    EVP_CIPHER_CTX *ctx = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds,
                                     enc ? "y*:AeadSealer" : "y*:AeadOpener",
                                     kwlist, &key))
        return NULL;
    if (check_len(&key, KEY_LEN, "key") < 0)
        goto error;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    if (EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL,
                          (const unsigned char *)key.buf, NULL, enc) != 1) {
        openssl_error("ChaCha20-Poly1305 init");
        goto error;
    }
    self = (AeadObject *)alloc_instance(type);
    if (self == NULL)
        goto error;
    self->ctx = ctx;
    self->counter = 0;
    self->busy = 0;
    self->failed = 0;
    PyBuffer_Release(&key);
    return (PyObject *)self;

error:
    EVP_CIPHER_CTX_free(ctx);
    PyBuffer_Release(&key);
    return NULL;
}

static PyObject *
AeadSealer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return aead_new(type, args, kwds, 1);
}

static PyObject *
AeadOpener_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return aead_new(type, args, kwds, 0);
}

static void
Aead_dealloc(PyObject *op)
{
    AeadObject *self = (AeadObject *)op;
    EVP_CIPHER_CTX_free(self->ctx);
    self->ctx = NULL;
    free_instance(op);
}

static int
aead_not_busy(AeadObject *self, const char *what)
{
    if (self->busy) {
        PyErr_Format(PyExc_RuntimeError, "%s is in use by another thread",
                     what);
        return 0;
    }
    return 1;
}

/* Room for count more messages: n = 2**64 - 1 is reserved (Noise 5.1). */
static int
aead_has_nonces(AeadObject *self, Py_ssize_t count)
{
    return (uint64_t)count <= UINT64_MAX - 1 - self->counter;
}

/*
 * Seal or open a batch: items are held buffers, outs preallocated bytes.
 * Returns 1 on success; on failure 0 with *failed_at set (no exception).
 */
static int
aead_run(AeadObject *self, int enc, Py_buffer *views, PyObject **outs,
         Py_ssize_t count, Py_ssize_t *failed_at)
{
    Py_ssize_t i;
    unsigned long long total = 0;
    int ok = 1;
    unsigned char **outbufs;
    EVP_CIPHER_CTX *ctx = self->ctx;
    uint64_t n0 = self->counter;

    outbufs = PyMem_Malloc(sizeof(unsigned char *) * (size_t)(count ? count : 1));
    if (outbufs == NULL) {
        *failed_at = -1;
        return 0;
    }
    for (i = 0; i < count; i++) {
        outbufs[i] = (unsigned char *)PyBytes_AsString(outs[i]);
        total += (unsigned long long)views[i].len;
    }
    *failed_at = -1;

#define AEAD_LOOP                                                          \
    for (i = 0; i < count; i++) {                                          \
        const unsigned char *in = (const unsigned char *)views[i].buf;    \
        size_t len = (size_t)views[i].len;                                 \
        ok = enc ? aead_seal_one(ctx, n0 + (uint64_t)i, in, len, outbufs[i]) \
                 : aead_open_one(ctx, n0 + (uint64_t)i, in, len, outbufs[i]); \
        if (!ok) {                                                         \
            *failed_at = i;                                                \
            break;                                                         \
        }                                                                  \
    }

    if (total >= GIL_RELEASE_THRESHOLD) {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        AEAD_LOOP
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    else {
        AEAD_LOOP
    }
#undef AEAD_LOOP
    PyMem_Free(outbufs);
    return ok;
}

/*
 * Body of seal_many/open_many. items is a tuple; the
 * result is a list of bytes, one per item.
 */
static PyObject *
aead_batch(AeadObject *self, int enc, PyObject *items, const char *fname)
{
    module_state *st = state_of_type(Py_TYPE((PyObject *)self));
    Py_ssize_t count = PyTuple_Size(items);
    Py_ssize_t got = 0, i, failed_at = -1;
    Py_buffer *views = NULL;
    PyObject *result = NULL;
    PyObject **outs = NULL;
    int bad_length = 0;

    if (self->failed) {
        if (enc)
            PyErr_SetString(PyExc_RuntimeError,
                            "AeadSealer is unusable after an OpenSSL failure");
        else
            PyErr_SetString(st->decrypt_error,
                            "opener failed earlier; the circuit must be torn down");
        return NULL;
    }
    if (!aead_not_busy(self, enc ? "AeadSealer" : "AeadOpener"))
        return NULL;
    views = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Py_buffer));
    if (views == NULL)
        return PyErr_NoMemory();
    result = PyList_New(count);
    if (result == NULL)
        goto error;
    /* Check every item before the counter moves. */
    for (got = 0; got < count; got++) {
        PyObject *item = PyTuple_GetItem(items, got);
        if (PyObject_GetBuffer(item, &views[got], PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         "%s() item %zd must be a bytes-like object, not %R",
                         fname, got, (PyObject *)Py_TYPE(item));
            goto error;
        }
        if (enc && views[got].len > MAX_AEAD_PLAINTEXT) {
            PyErr_Format(PyExc_ValueError,
                         "%s() item %zd: plaintext longer than %d bytes",
                         fname, got, MAX_AEAD_PLAINTEXT);
            got++;
            goto error;
        }
        if (!enc && (views[got].len < TAG_LEN ||
                     views[got].len > MAX_AEAD_MESSAGE_LEN))
            bad_length = 1;
    }
    if (!enc && (bad_length || !aead_has_nonces(self, count))) {
        self->failed = 1;
        if (bad_length)
            PyErr_Format(st->decrypt_error,
                         "AEAD message shorter than the tag or longer than "
                         "%d bytes", MAX_AEAD_MESSAGE_LEN);
        else
            PyErr_SetString(st->decrypt_error, "AEAD nonce space exhausted");
        goto error;
    }
    if (enc && !aead_has_nonces(self, count)) {
        PyErr_SetString(PyExc_ValueError, "AEAD nonce space exhausted");
        goto error;
    }
    outs = PyMem_Malloc(sizeof(PyObject *) * (size_t)(count ? count : 1));
    if (outs == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (i = 0; i < count; i++) {
        Py_ssize_t outlen = enc ? views[i].len + TAG_LEN
                                : views[i].len - TAG_LEN;
        PyObject *out = PyBytes_FromStringAndSize(NULL, outlen);
        if (out == NULL)
            goto error;
        PyList_SetItem(result, i, out); /* steals; the list keeps it */
        outs[i] = out;
    }
    if (!aead_run(self, enc, views, outs, count, &failed_at)) {
        if (failed_at < 0) {
            PyErr_NoMemory();
            goto error;
        }
        if (enc) {
            /* Cannot happen short of an OpenSSL fault; the nonce may have
             * been used, so this sealer must not seal again. */
            self->failed = 1;
            openssl_error("ChaCha20-Poly1305 seal");
        }
        else {
            self->failed = 1;
            PyErr_Format(st->decrypt_error,
                         "%s(): AEAD message %zd failed authentication",
                         fname, failed_at);
        }
        goto error;
    }
    self->counter += (uint64_t)count;
    for (i = 0; i < count; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(outs);
    return result;

error:
    for (i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(outs);
    Py_XDECREF(result);
    return NULL;
}

/* seal() / open(): the same checks as aead_batch, without the lists. */
static PyObject *
aead_single(PyObject *op, PyObject *arg, int enc, const char *fname)
{
    AeadObject *self = (AeadObject *)op;
    module_state *st = state_of_type(Py_TYPE(op));
    Py_buffer view;
    PyObject *out = NULL;
    unsigned char *outbuf;
    int ok;

    if (self->failed) {
        if (enc)
            PyErr_SetString(PyExc_RuntimeError,
                            "AeadSealer is unusable after an OpenSSL failure");
        else
            PyErr_SetString(st->decrypt_error,
                            "opener failed earlier; the circuit must be torn down");
        return NULL;
    }
    if (!aead_not_busy(self, enc ? "AeadSealer" : "AeadOpener"))
        return NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "%s() argument must be a bytes-like object, not %R",
                     fname, (PyObject *)Py_TYPE(arg));
        return NULL;
    }
    if (enc && view.len > MAX_AEAD_PLAINTEXT) {
        PyErr_Format(PyExc_ValueError, "plaintext longer than %d bytes",
                     MAX_AEAD_PLAINTEXT);
        goto done;
    }
    if (!aead_has_nonces(self, 1)) {
        if (enc) {
            PyErr_SetString(PyExc_ValueError, "AEAD nonce space exhausted");
        }
        else {
            self->failed = 1;
            PyErr_SetString(st->decrypt_error, "AEAD nonce space exhausted");
        }
        goto done;
    }
    if (!enc && (view.len < TAG_LEN || view.len > MAX_AEAD_MESSAGE_LEN)) {
        self->failed = 1;
        PyErr_Format(st->decrypt_error, "AEAD message of %zd bytes", view.len);
        goto done;
    }
    out = PyBytes_FromStringAndSize(
        NULL, enc ? view.len + TAG_LEN : view.len - TAG_LEN);
    if (out == NULL)
        goto done;
    outbuf = (unsigned char *)PyBytes_AsString(out);

#define AEAD_ONE                                                            \
    ok = enc ? aead_seal_one(self->ctx, self->counter,                     \
                             (const unsigned char *)view.buf,              \
                             (size_t)view.len, outbuf)                     \
             : aead_open_one(self->ctx, self->counter,                     \
                             (const unsigned char *)view.buf,              \
                             (size_t)view.len, outbuf);
    if (view.len >= GIL_RELEASE_THRESHOLD) {
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        AEAD_ONE
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    else {
        AEAD_ONE
    }
#undef AEAD_ONE

    if (!ok) {
        Py_CLEAR(out);
        self->failed = 1;
        if (enc)
            openssl_error("ChaCha20-Poly1305 seal");
        else
            PyErr_SetString(st->decrypt_error,
                            "AEAD message failed authentication");
        goto done;
    }
    self->counter += 1;
done:
    PyBuffer_Release(&view);
    return out;
}

static PyObject *
aead_many(PyObject *op, PyObject *arg, int enc, const char *fname)
{
    PyObject *items, *list;
    items = PySequence_Tuple(arg);
    if (items == NULL)
        return NULL;
    list = aead_batch((AeadObject *)op, enc, items, fname);
    Py_DECREF(items);
    return list;
}

static PyObject *
AeadSealer_seal(PyObject *op, PyObject *arg)
{
    return aead_single(op, arg, 1, "seal");
}

static PyObject *
AeadSealer_seal_many(PyObject *op, PyObject *arg)
{
    return aead_many(op, arg, 1, "seal_many");
}

static PyObject *
AeadOpener_open(PyObject *op, PyObject *arg)
{
    return aead_single(op, arg, 0, "open");
}

static PyObject *
AeadOpener_open_many(PyObject *op, PyObject *arg)
{
    return aead_many(op, arg, 0, "open_many");
}

static PyMethodDef AeadSealer_methods[] = {
    {"seal", AeadSealer_seal, METH_O,
     "seal(plaintext, /)\n--\n\n"
     "Return ciphertext || 16-byte tag for the next nonce; counter += 1."},
    {"seal_many", AeadSealer_seal_many, METH_O,
     "seal_many(plaintexts, /)\n--\n\n"
     "seal() each item in order, in one call; returns a list of bytes."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef AeadOpener_methods[] = {
    {"open", AeadOpener_open, METH_O,
     "open(ciphertext, /)\n--\n\n"
     "Return the plaintext of ciphertext || tag sealed with the next nonce.\n"
     "DecryptError on failure, and on every call after any failure."},
    {"open_many", AeadOpener_open_many, METH_O,
     "open_many(ciphertexts, /)\n--\n\n"
     "open() each item in order, in one call; returns a list of bytes."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot AeadSealer_slots[] = {
    {Py_tp_new, AeadSealer_new},
    {Py_tp_dealloc, Aead_dealloc},
    {Py_tp_methods, AeadSealer_methods},
    {Py_tp_doc, (void *)"AeadSealer(key)\n--\n\n"
                "Sending half of a Noise CipherState: ChaCha20-Poly1305 IETF,\n"
                "nonce = 4 zero bytes || 8-byte little-endian counter from 0,\n"
                "empty associated data."},
    {0, NULL},
};

static PyType_Slot AeadOpener_slots[] = {
    {Py_tp_new, AeadOpener_new},
    {Py_tp_dealloc, Aead_dealloc},
    {Py_tp_methods, AeadOpener_methods},
    {Py_tp_doc, (void *)"AeadOpener(key)\n--\n\n"
                "Receiving half of a Noise CipherState (see AeadSealer).\n"
                "After any decryption failure it is failed for good."},
    {0, NULL},
};

static PyType_Spec AeadSealer_spec = {
    .name = "globalnet._gnetcrypto.AeadSealer",
    .basicsize = sizeof(AeadObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = AeadSealer_slots,
};

static PyType_Spec AeadOpener_spec = {
    .name = "globalnet._gnetcrypto.AeadOpener",
    .basicsize = sizeof(AeadObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = AeadOpener_slots,
};

/* ------------------------------------------------------------------ */
/* Module                                                              */
/* ------------------------------------------------------------------ */

#ifdef __GLIBC__
PyDoc_STRVAR(malloc_trim_doc,
"malloc_trim(pad, /) -> int\n"
"\n"
"glibc's malloc_trim(pad): return free heap pages to the OS; 1 if memory\n"
"was released, else 0.");

static PyObject *
gn_malloc_trim(PyObject *module, PyObject *arg)
{
    size_t pad = PyLong_AsSize_t(arg);
    int released;

    (void)module;
    if (pad == (size_t)-1 && PyErr_Occurred())
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    released = malloc_trim(pad);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(released);
}
#endif

#ifdef __GLIBC__
PyDoc_STRVAR(mallopt_doc,
"mallopt(param, value, /) -> int\n"
"\n"
"glibc's mallopt(param, value): 1 on success, 0 on error.");

static PyObject *
gn_mallopt(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    long param, value;

    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "mallopt takes exactly 2 arguments");
        return NULL;
    }
    param = PyLong_AsLong(args[0]);
    if (param == -1 && PyErr_Occurred())
        return NULL;
    value = PyLong_AsLong(args[1]);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    if (param < INT_MIN || param > INT_MAX || value < INT_MIN || value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "mallopt arguments must fit a C int");
        return NULL;
    }
    return PyLong_FromLong(mallopt((int)param, (int)value));
}
#endif

static PyMethodDef module_methods[] = {
    {"xor_layers", (PyCFunction)(void (*)(void))gn_xor_layers, METH_FASTCALL,
     xor_layers_doc},
#ifdef __GLIBC__
    {"malloc_trim", gn_malloc_trim, METH_O, malloc_trim_doc},
    {"mallopt", (PyCFunction)(void (*)(void))gn_mallopt, METH_FASTCALL, mallopt_doc},
#endif
    {NULL, NULL, 0, NULL},
};

/*
 * DecryptError is the reference's class, globalnet.crypto.layers.DecryptError,
 * so that one except clause catches it whichever backend raised it. Only if
 * layers.py cannot be imported at all (the extension used on its own) is a
 * look-alike ValueError subclass made here.
 */
static PyObject *
load_decrypt_error(void)
{
    PyObject *layers, *error;

    layers = PyImport_ImportModule("globalnet.crypto.layers");
    if (layers == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError))
            return NULL;
        PyErr_Clear();
        return PyErr_NewExceptionWithDoc(
            "globalnet._gnetcrypto.DecryptError",
            "An AEAD message did not authenticate, or the opener had failed "
            "before.",
            PyExc_ValueError, NULL);
    }
    error = PyObject_GetAttrString(layers, "DecryptError");
    Py_DECREF(layers);
    if (error == NULL)
        return NULL;
    if (!PyType_Check(error) ||
        !PyType_IsSubtype((PyTypeObject *)error,
                          (PyTypeObject *)PyExc_ValueError)) {
        PyErr_SetString(PyExc_ImportError,
                        "globalnet.crypto.layers.DecryptError is not a "
                        "ValueError subclass");
        Py_DECREF(error);
        return NULL;
    }
    return error;
}

static int
module_exec(PyObject *module)
{
    module_state *st = (module_state *)PyModule_GetState(module);

    st->keystream_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Keystream_spec, NULL);
    if (st->keystream_type == NULL ||
        PyModule_AddType(module, st->keystream_type) < 0)
        return -1;
    st->sealer_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &AeadSealer_spec, NULL);
    if (st->sealer_type == NULL ||
        PyModule_AddType(module, st->sealer_type) < 0)
        return -1;
    st->opener_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &AeadOpener_spec, NULL);
    if (st->opener_type == NULL ||
        PyModule_AddType(module, st->opener_type) < 0)
        return -1;
    /* Constants and types first: importing layers.py below can run
     * globalnet.crypto's backend selection, which looks at this module
     * while it is still being initialised. */
    {
        PyObject *max = PyLong_FromUnsignedLongLong(MAX_KEYSTREAM_BYTES);
        if (max == NULL)
            return -1;
        if (PyModule_AddObjectRef(module, "MAX_KEYSTREAM_BYTES", max) < 0) {
            Py_DECREF(max);
            return -1;
        }
        Py_DECREF(max);
    }
    if (PyModule_AddIntConstant(module, "GIL_RELEASE_THRESHOLD",
                                GIL_RELEASE_THRESHOLD) < 0)
        return -1;
    if (PyModule_AddStringConstant(module, "OPENSSL_VERSION",
                                   OpenSSL_version(OPENSSL_VERSION)) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "MAX_AEAD_MESSAGE_LEN",
                                MAX_AEAD_MESSAGE_LEN) < 0 ||
        PyModule_AddIntConstant(module, "AEAD_TAG_LEN", TAG_LEN) < 0)
        return -1;
    st->decrypt_error = load_decrypt_error();
    if (st->decrypt_error == NULL ||
        PyModule_AddObjectRef(module, "DecryptError", st->decrypt_error) < 0)
        return -1;
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    module_state *st = (module_state *)PyModule_GetState(module);
    if (st == NULL)
        return 0;
    Py_VISIT(st->keystream_type);
    Py_VISIT(st->sealer_type);
    Py_VISIT(st->opener_type);
    Py_VISIT(st->decrypt_error);
    return 0;
}

static int
module_clear(PyObject *module)
{
    module_state *st = (module_state *)PyModule_GetState(module);
    if (st == NULL)
        return 0;
    Py_CLEAR(st->keystream_type);
    Py_CLEAR(st->sealer_type);
    Py_CLEAR(st->opener_type);
    Py_CLEAR(st->decrypt_error);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef gnetcrypto_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "globalnet._gnetcrypto",
    .m_doc = "GlobalNet per-chunk crypto hot path (OpenSSL EVP); the same API "
             "as globalnet.crypto.layers.",
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__gnetcrypto(void)
{
    return PyModuleDef_Init(&gnetcrypto_module);
}
