/* A strict, single-pass scanner for the venue trade CSVs (Tardis, Bybit, OKX): it converts
 * the wanted columns of complete, plain rows and gives up on anything else, so the caller reads
 * that file with pyarrow's general reader instead (feeder/history/csv_scan.py). It never
 * guesses: a row it cannot convert exactly as pyarrow would is a refusal, not a value.
 *
 * Rows: fields separated by ',', ended by '\n' or "\r\n"; empty lines are skipped (as pyarrow
 * does). Refused: a quote anywhere, a lone '\r', a wrong field count, an empty converted
 * field, a value outside the grammar of its kind.
 *
 * Kinds: 0 skip; 1 int64 ([-]digits, at most 18 digits); 2 float64 ([-]digits[.digits]
 * [(e|E)[+|-]digits], correctly rounded: exact Clinger fast path, else glibc strtod, which is
 * correctly rounded as pyarrow's parser is); 3 taker side (int8: 0 "buy", 1 "sell" in any
 * ASCII case, 2 any other ASCII text); 4 UUID (36 ASCII characters; int64: the hex digits at
 * 0-7, 9-12 and 14-17 read big endian, the top bit cleared, as
 * feeder.history.venue_csv.ids_from_text reads ids that are all 36 characters long); 5 bool ("true"/"false" in any ASCII case, as
 * the Binance reader's true/false values).
 *
 * Loaded with ctypes; the module init below only makes the file a valid extension module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SF_SCAN_VERSION 2

static const double P10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static signed char HEX[256];

static void init_hex(void) {
    memset(HEX, -1, sizeof HEX);
    for (int i = 0; i < 10; i++) HEX['0' + i] = (signed char)i;
    for (int i = 0; i < 6; i++) HEX['a' + i] = HEX['A' + i] = (signed char)(10 + i);
}

static int parse_int(const char *p, const char *e, int64_t *out) {
    int neg = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    if (p == e || e - p > 18) return 0;
    int64_t v = 0;
    for (; p < e; p++) {
        unsigned d = (unsigned char)*p - '0';
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    *out = neg ? -v : v;
    return 1;
}

static int parse_float(const char *p, const char *e, double *out) {
    const char *s = p;
    int neg = 0;
    if (p < e && *p == '-') {
        neg = 1;
        p++;
    }
    uint64_t m = 0;
    int sig = 0, frac = 0, digits = 0, exp = 0;
    for (; p < e && (unsigned)((unsigned char)*p - '0') <= 9; p++, digits++) {
        if (sig < 19) {
            m = m * 10 + (unsigned)(*p - '0');
            if (m) sig++;
        } else {
            sig = 99; /* too many significant digits for the fast path */
        }
    }
    if (digits == 0) return 0;
    if (p < e && *p == '.') {
        p++;
        int fd = 0;
        for (; p < e && (unsigned)((unsigned char)*p - '0') <= 9; p++, fd++) {
            if (sig < 19) {
                m = m * 10 + (unsigned)(*p - '0');
                if (m) sig++;
                frac++;
            } else {
                sig = 99;
            }
        }
        if (fd == 0) return 0;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0, ed = 0;
        if (p < e && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        for (; p < e && (unsigned)((unsigned char)*p - '0') <= 9; p++, ed++) {
            if (exp < 100000) exp = exp * 10 + (*p - '0');
        }
        if (ed == 0) return 0;
        if (eneg) exp = -exp;
    }
    if (p != e) return 0;
    int e10 = exp - frac;
    if (sig <= 19 && m <= (1ULL << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)m;
        v = e10 < 0 ? v / P10[-e10] : v * P10[e10];
        *out = neg ? -v : v;
        return 1;
    }
    char tmp[128];
    size_t n = (size_t)(e - s);
    if (n >= sizeof tmp) return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    *out = strtod(tmp, &end);
    return end == tmp + n;
}

static int parse_side(const char *p, const char *e, int8_t *out) {
    size_t n = (size_t)(e - p);
    if (n == 0) return 0;
    if (n == 3 && (p[0] | 0x20) == 'b' && (p[1] | 0x20) == 'u' && (p[2] | 0x20) == 'y') {
        *out = 0;
    } else if (n == 4 && (p[0] | 0x20) == 's' && (p[1] | 0x20) == 'e' && (p[2] | 0x20) == 'l' &&
               (p[3] | 0x20) == 'l') {
        *out = 1;
    } else {
        for (size_t i = 0; i < n; i++) /* not ASCII: pyarrow checks UTF-8, so it decides */
            if ((unsigned char)p[i] >= 0x80) return 0;
        *out = 2;
    }
    return 1;
}

static int parse_bool(const char *p, const char *e, uint8_t *out) {
    size_t n = (size_t)(e - p);
    if (n == 4 && (p[0] | 0x20) == 't' && (p[1] | 0x20) == 'r' && (p[2] | 0x20) == 'u' &&
        (p[3] | 0x20) == 'e') {
        *out = 1;
        return 1;
    }
    if (n == 5 && (p[0] | 0x20) == 'f' && (p[1] | 0x20) == 'a' && (p[2] | 0x20) == 'l' &&
        (p[3] | 0x20) == 's' && (p[4] | 0x20) == 'e') {
        *out = 0;
        return 1;
    }
    return 0;
}

static const int UUID_HEX16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17};

static int parse_uuid(const char *p, const char *e, int64_t *out) {
    if (e - p != 36) return 0;
    uint64_t w, any = 0; /* not ASCII: pyarrow checks UTF-8, so it decides */
    uint32_t t;
    for (int i = 0; i < 32; i += 8) {
        memcpy(&w, p + i, 8);
        any |= w;
    }
    memcpy(&t, p + 32, 4);
    if ((any | t) & 0x8080808080808080ULL) return 0;
    uint64_t v = 0;
    int bad = 0;
    for (int i = 0; i < 16; i++) {
        signed char h = HEX[(unsigned char)p[UUID_HEX16[i]]];
        bad |= h;
        v = (v << 4) | (uint64_t)(h & 0xF);
    }
    if (bad < 0) return 0;
    *out = (int64_t)(v & 0x7FFFFFFFFFFFFFFFULL);
    return 1;
}

/* Convert the complete lines of buf[0:len). Returns the rows written (at most cap), or -1 when
 * a row is refused. *consumed is the length of the complete lines converted. */
int64_t sf_scan(const char *buf, int64_t len, int32_t ncols, const int8_t *kinds, void **outs,
                int64_t cap, int64_t *consumed) {
    const char *p = buf, *end = buf + len;
    int64_t rows = 0;
    *consumed = 0;
    if (memchr(buf, '"', (size_t)len) != NULL) return -1;
    int has_cr = memchr(buf, '\r', (size_t)len) != NULL;
    while (p < end && rows < cap) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) break;
        const char *le = nl;
        if (has_cr) {
            if (le > p && le[-1] == '\r') le--;
            if (memchr(p, '\r', (size_t)(le - p)) != NULL) return -1; /* a lone CR */
        }
        if (le == p) { /* an empty line */
            p = nl + 1;
            *consumed = p - buf;
            continue;
        }
        const char *f = p;
        for (int32_t c = 0; c < ncols; c++) {
            const char *fe = memchr(f, ',', (size_t)(le - f));
            if (fe == NULL) fe = le;
            if ((c < ncols - 1) != (fe < le)) return -1; /* too few or too many fields */
            int ok = 1;
            switch (kinds[c]) {
            case 0:
                break;
            case 1:
                ok = parse_int(f, fe, (int64_t *)outs[c] + rows);
                break;
            case 2:
                ok = parse_float(f, fe, (double *)outs[c] + rows);
                break;
            case 3:
                ok = parse_side(f, fe, (int8_t *)outs[c] + rows);
                break;
            case 4:
                ok = parse_uuid(f, fe, (int64_t *)outs[c] + rows);
                break;
            case 5:
                ok = parse_bool(f, fe, (uint8_t *)outs[c] + rows);
                break;
            default:
                return -1;
            }
            if (!ok) return -1;
            f = fe + 1;
        }
        rows++;
        p = nl + 1;
        *consumed = p - buf;
    }
    return rows;
}

int32_t sf_scan_version(void) { return SF_SCAN_VERSION; }

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_csvscan",
                                    "C scanner of venue trade CSVs (loaded with ctypes)", -1,
                                    NULL};

PyMODINIT_FUNC PyInit__csvscan(void) { return PyModule_Create(&module); }

__attribute__((constructor)) static void init(void) { init_hex(); }
