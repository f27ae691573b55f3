// Fused kernels of the aspects engine: each reads longitudes and writes a reduced result (hit codes, hit columns,
// scores, top-k candidates) in one pass, with no temporaries between steps.
//
// The same text is compiled two ways (see fused.py): by NVRTC for CuPy on a GPU, and by the host's C++ compiler
// for the CPU emulation the test suite runs, so that CI, which has no GPU, checks these kernels' results against
// the NumPy path. A prelude defines DEVICE, GLOBAL, EXTERN_C, FOR_EACH (a grid-stride loop on the GPU, a plain loop
// on the host) and the engine's constants (NUM_ASPECTS, codes, TOPK_K). Both builds disable fused multiply-add, so
// every operation rounds as NumPy's does and results are identical, not merely close.
//
// Only plain arithmetic, no shared memory, atomics or synchronisation: one thread per output element (or per
// row segment for top-k), which is what lets the host build run the same code serially.

typedef long long i64;

// min(a, 360 - a): the separation in [0, 180] from a = |lon1 - lon2| (classify.separation).
DEVICE double separation(double a) {
    double b = 360.0 - a;
    return b < a ? b : a;
}

// The matching rule (classify.match_aspects): the first active aspect in match order whose closed interval
// [lo[k], hi[k]] holds sep. Inactive aspects have lo = +inf, so they never match.
DEVICE int match_aspect(double sep, const double* lo, const double* hi) {
    for (int k = 0; k < NUM_ASPECTS; ++k) {
        if (sep >= lo[k] && sep <= hi[k]) return k;
    }
    return NO_ASPECT;
}

// NumPy's float remainder (npy_divmod): the result takes the divisor's sign, and zero is +0.
DEVICE double python_mod(double x, double m) {
    double r = fmod(x, m);
    if (r != 0.0) {
        if ((m < 0.0) != (r < 0.0)) r += m;
    } else {
        r = m < 0.0 ? -0.0 : 0.0;
    }
    return r;
}

// kerykeion's movement rule (kernels.movement), for one hit.
DEVICE unsigned char movement_code(double lon1, double lon2, double speed1, double speed2, double angle) {
    double now = fabs(separation(fabs(lon1 - lon2)) - angle);
    double ahead1 = python_mod(lon1 + speed1 * LOOKAHEAD_DAYS, 360.0);
    double ahead2 = python_mod(lon2 + speed2 * LOOKAHEAD_DAYS, 360.0);
    double later = fabs(separation(fabs(ahead1 - ahead2)) - angle);
    if (fabs(speed1 - speed2) < STATIC_RELATIVE_SPEED || fabs(later - now) < STATIC_CHANGE) return MOVE_STATIC;
    return later < now ? MOVE_APPLYING : MOVE_SEPARATING;
}

// -- hits ---------------------------------------------------------------------------------------------------------
//
// Cell t of a chunk is (row r, column c, point pair n), row-major, as the NumPy path lays it out. Row r of `a` is
// compared with row c of `b`, or with row r of `b` when `paired` (natal: b = a; paired synastry). The code is
// written plus one, so that 0 means "no aspect" and a nonzero scan of the codes lists the hits in order.

EXTERN_C GLOBAL void hit_codes(
    const double* a, const double* b, i64 rows, i64 cols, i64 num_points, i64 pairs, int paired,
    const int* p1, const int* p2, const int* pair_profile, const double* lo, const double* hi,
    unsigned char* codes)
{
    FOR_EACH(t, rows * cols * pairs) {
        i64 n = t % pairs;
        i64 cell = t / pairs;
        i64 r = cell / cols;
        i64 rb = paired ? r : cell % cols;
        double d = fabs(a[r * num_points + p1[n]] - b[rb * num_points + p2[n]]);
        i64 profile = pair_profile[n] * (i64)NUM_ASPECTS;
        codes[t] = (unsigned char)(match_aspect(separation(d), lo + profile, hi + profile) + 1);
    }
}

// The result columns of the hits at flat cell indices `flat` (ascending), in the result's dtypes.
EXTERN_C GLOBAL void hit_columns(
    const i64* flat, i64 count, const unsigned char* codes,
    const double* a, const double* b, const double* speed_a, const double* speed_b, int has_speed,
    i64 cols, i64 num_points, i64 pairs, int paired, i64 row_offset, i64 col_offset,
    const int* p1, const int* p2, const double* angles,
    int* out_i, int* out_j, unsigned char* out_p1, unsigned char* out_p2, unsigned char* out_aspect,
    double* out_orb, unsigned char* out_movement)
{
    FOR_EACH(h, count) {
        i64 t = flat[h];
        i64 n = t % pairs;
        i64 cell = t / pairs;
        i64 r = cell / cols;
        i64 rb = paired ? r : cell % cols;
        int aspect = (int)codes[t] - 1;
        double lon1 = a[r * num_points + p1[n]];
        double lon2 = b[rb * num_points + p2[n]];
        out_i[h] = (int)(r + row_offset);
        out_j[h] = (int)(paired ? r + row_offset : rb + col_offset);
        out_p1[h] = (unsigned char)p1[n];
        out_p2[h] = (unsigned char)p2[n];
        out_aspect[h] = (unsigned char)aspect;
        out_orb[h] = fabs(separation(fabs(lon1 - lon2)) - angles[aspect]);
        out_movement[h] = has_speed ? movement_code(
            lon1, lon2, speed_a[r * num_points + p1[n]], speed_b[rb * num_points + p2[n]], angles[aspect]
        ) : MOVE_STATIC;
    }
}

// -- scores -------------------------------------------------------------------------------------------------------

// kerykeion's relationship score of one chart pair (scoring.DiscepoloScorer). Term m scores point term_a[m] of x
// against point term_b[m] of y with table term_table[m]; points[table][precise?][code + 1] are its points.
DEVICE int discepolo_pair(
    const double* x, const double* y, int num_terms, const int* term_a, const int* term_b, const int* term_table,
    const double* lo, const double* hi, const double* angles, const signed char* precise,
    const signed char* standard, int sun)
{
    int score = 0;
    for (int m = 0; m < num_terms; ++m) {
        double sep = separation(fabs(x[term_a[m]] - y[term_b[m]]));
        int code = match_aspect(sep, lo, hi);
        double orb = fabs(sep - angles[code < 0 ? 0 : code]);
        int slot = term_table[m] * (NUM_ASPECTS + 1) + code + 1;
        score += orb <= HIGH_PRECISION_ORB ? precise[slot] : standard[slot];
    }
    // Suns in signs of the same quality (cardinal, fixed, mutable): the sign's index modulo 3.
    if ((int)floor(x[sun] / 30.0) % 3 == (int)floor(y[sun] / 30.0) % 3) score += DESTINY_SIGN_POINTS;
    return score;
}

// NumPy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src), which np.sum applies along a contiguous
// axis: the same additions in the same order, so weighted scores round exactly as on the CPU. term(n) is the n-th
// addend. Blocks of at most 128 are summed with 8 accumulators; longer runs split in two (a multiple of 8 first),
// evaluated here with an explicit stack, as recursion would not inline.
#define PAIRWISE_BLOCK 128

template <typename Term>
DEVICE double pairwise_block(const Term& term, i64 start, i64 n) {
    if (n < 8) {
        double res = 0.0;
        for (i64 i = 0; i < n; ++i) res += term(start + i);
        return res;
    }
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = term(start + j);
    i64 i = 8;
    for (; i < n - (n % 8); i += 8) {
        for (int j = 0; j < 8; ++j) r[j] += term(start + i + j);
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += term(start + i);
    return res;
}

template <typename Term>
DEVICE double pairwise_sum(const Term& term, i64 n) {
    if (n <= PAIRWISE_BLOCK) return pairwise_block(term, 0, n);
    // Depth grows with log2(n / 128): 48 frames cover any n a chart could have.
    i64 start[48], length[48];
    bool split[48];
    double partial[48];
    int frames = 0, values = 0;
    start[0] = 0; length[0] = n; split[0] = false; frames = 1;
    while (frames > 0) {
        int f = frames - 1;
        if (length[f] <= PAIRWISE_BLOCK) {
            partial[values++] = pairwise_block(term, start[f], length[f]);
            --frames;
        } else if (!split[f]) {
            split[f] = true;
            i64 half = length[f] / 2;
            half -= half % 8;
            // Right pushed first, so the left half is summed first, as in NumPy's recursion.
            start[frames] = start[f] + half; length[frames] = length[f] - half; split[frames] = false; ++frames;
            start[frames] = start[f]; length[frames] = half; split[frames] = false; ++frames;
        } else {
            double right = partial[--values];
            double left = partial[--values];
            partial[values++] = left + right;
            --frames;
        }
    }
    return partial[0];
}

// The weighted harmony score of one chart pair (scoring.WeightedScorer), before scaling: over all point pairs n,
// (harmony - orb * slope) * pair_weight where an aspect forms, and zero where none does.
DEVICE double weighted_pair(
    const double* x, const double* y, i64 num_points, i64 pairs, const int* p1, const int* p2,
    const int* pair_profile, const double* lo, const double* hi, const double* angles, const double* slope,
    const double* harmony, const double* pair_weight)
{
    (void)num_points;
    auto term = [&](i64 n) -> double {
        double sep = separation(fabs(x[p1[n]] - y[p2[n]]));
        i64 profile = pair_profile[n] * (i64)NUM_ASPECTS;
        int code = match_aspect(sep, lo + profile, hi + profile);
        if (code == NO_ASPECT) return 0.0;
        double orb = fabs(sep - angles[code]);
        return (harmony[profile + code] - orb * slope[profile + code]) * pair_weight[n];
    };
    return pairwise_sum(term, pairs);
}

DEVICE double weighted_final(double total, double scale) {
    double s = total * scale;
    return s < -100.0 ? -100.0 : (s > 100.0 ? 100.0 : s);
}

EXTERN_C GLOBAL void discepolo_scores(
    const double* a, const double* b, i64 rows, i64 cols, i64 num_points,
    int num_terms, const int* term_a, const int* term_b, const int* term_table,
    const double* lo, const double* hi, const double* angles, const signed char* precise,
    const signed char* standard, int sun, short* out)
{
    FOR_EACH(t, rows * cols) {
        i64 r = t / cols;
        i64 c = t % cols;
        out[t] = (short)discepolo_pair(a + r * num_points, b + c * num_points, num_terms, term_a, term_b,
                                       term_table, lo, hi, angles, precise, standard, sun);
    }
}

EXTERN_C GLOBAL void weighted_scores(
    const double* a, const double* b, i64 rows, i64 cols, i64 num_points, i64 pairs,
    const int* p1, const int* p2, const int* pair_profile, const double* lo, const double* hi,
    const double* angles, const double* slope, const double* harmony, const double* pair_weight, double scale,
    double* out)
{
    FOR_EACH(t, rows * cols) {
        i64 r = t / cols;
        i64 c = t % cols;
        double total = weighted_pair(a + r * num_points, b + c * num_points, num_points, pairs, p1, p2,
                                     pair_profile, lo, hi, angles, slope, harmony, pair_weight);
        out[t] = weighted_final(total, scale);
    }
}

// -- top-k --------------------------------------------------------------------------------------------------------
//
// The order is total (higher score first, then lower column), so the k best of a row are the k best of the k best
// of each of its segments: threads keep a sorted list of TOPK_K per (row, column segment), and a second kernel
// merges a row's segment lists. Nothing of size rows x columns is ever stored. Empty slots hold the lowest score
// and column NO_COLUMN, which every real candidate beats.

template <typename T>
DEVICE bool better(T value, i64 column, T than_value, i64 than_column) {
    return value > than_value || (value == than_value && column < than_column);
}

template <typename T>
DEVICE void insert_candidate(T* values, i64* columns, T value, i64 column) {
    if (!better(value, column, values[TOPK_K - 1], columns[TOPK_K - 1])) return;
    int at = TOPK_K - 1;
    while (at > 0 && better(value, column, values[at - 1], columns[at - 1])) {
        values[at] = values[at - 1];
        columns[at] = columns[at - 1];
        --at;
    }
    values[at] = value;
    columns[at] = column;
}

template <typename T>
DEVICE void clear_candidates(T* values, i64* columns, T lowest) {
    for (int m = 0; m < TOPK_K; ++m) {
        values[m] = lowest;
        columns[m] = NO_COLUMN;
    }
}

template <typename T>
DEVICE void store_candidates(const T* values, const i64* columns, T* out_values, i64* out_columns, i64 at) {
    for (int m = 0; m < TOPK_K; ++m) {
        out_values[at + m] = values[m];
        out_columns[at + m] = columns[m];
    }
}

// One task's list: the TOPK_K best columns of row r within segment s, scored by score(row of a, row of b). Task t
// is (row t % rows, segment t / rows): neighbouring threads take neighbouring rows of the same segment, so a warp
// reads the same columns of b at once. `excluded[r]` is a column left out of row r's candidates (-1: none).
template <typename T, typename Score>
DEVICE void segment_top_k(
    i64 t, const double* a, const double* b, i64 rows, i64 cols, i64 num_points, i64 segments, i64 segment_length,
    const i64* excluded, i64 col_offset, T lowest, const Score& score, T* out_values, i64* out_columns)
{
    i64 r = t % rows;
    i64 s = t / rows;
    T values[TOPK_K];
    i64 columns[TOPK_K];
    clear_candidates(values, columns, lowest);
    i64 start = s * segment_length;
    i64 stop = start + segment_length < cols ? start + segment_length : cols;
    const double* x = a + r * num_points;
    for (i64 c = start; c < stop; ++c) {
        i64 column = c + col_offset;
        if (column == excluded[r]) continue;
        insert_candidate(values, columns, score(x, b + c * num_points), column);
    }
    store_candidates(values, columns, out_values, out_columns, (r * segments + s) * TOPK_K);
}

EXTERN_C GLOBAL void topk_discepolo(
    const double* a, const double* b, i64 rows, i64 cols, i64 num_points, i64 segments, i64 segment_length,
    const i64* excluded, i64 col_offset,
    int num_terms, const int* term_a, const int* term_b, const int* term_table,
    const double* lo, const double* hi, const double* angles, const signed char* precise,
    const signed char* standard, int sun, short lowest, short* out_values, i64* out_columns)
{
    auto score = [&](const double* x, const double* y) -> short {
        return (short)discepolo_pair(x, y, num_terms, term_a, term_b, term_table, lo, hi, angles, precise, standard,
                                     sun);
    };
    FOR_EACH(t, rows * segments) {
        segment_top_k(t, a, b, rows, cols, num_points, segments, segment_length, excluded, col_offset, lowest, score,
                      out_values, out_columns);
    }
}

EXTERN_C GLOBAL void topk_weighted(
    const double* a, const double* b, i64 rows, i64 cols, i64 num_points, i64 segments, i64 segment_length,
    const i64* excluded, i64 col_offset, i64 pairs,
    const int* p1, const int* p2, const int* pair_profile, const double* lo, const double* hi,
    const double* angles, const double* slope, const double* harmony, const double* pair_weight, double scale,
    double lowest, double* out_values, i64* out_columns)
{
    auto score = [&](const double* x, const double* y) -> double {
        return weighted_final(weighted_pair(x, y, num_points, pairs, p1, p2, pair_profile, lo, hi, angles, slope,
                                            harmony, pair_weight), scale);
    };
    FOR_EACH(t, rows * segments) {
        segment_top_k(t, a, b, rows, cols, num_points, segments, segment_length, excluded, col_offset, lowest, score,
                      out_values, out_columns);
    }
}

// A row's `candidates` lists (each sorted, TOPK_K long) merged into its best `k` (k <= TOPK_K), best first.
template <typename T>
DEVICE void merge_row(const T* values, const i64* columns, i64 candidates, i64 k, T lowest, T* out_values,
                      i64* out_columns) {
    T best[TOPK_K];
    i64 best_columns[TOPK_K];
    clear_candidates(best, best_columns, lowest);
    for (i64 m = 0; m < candidates; ++m) {
        if (columns[m] != NO_COLUMN) insert_candidate(best, best_columns, values[m], columns[m]);
    }
    for (i64 m = 0; m < k; ++m) {
        out_values[m] = best[m];
        out_columns[m] = best_columns[m];
    }
}

EXTERN_C GLOBAL void topk_merge_short(
    const short* values, const i64* columns, i64 rows, i64 candidates, i64 k, short lowest, short* out_values,
    i64* out_columns)
{
    FOR_EACH(r, rows) {
        merge_row(values + r * candidates, columns + r * candidates, candidates, k, lowest, out_values + r * k,
                  out_columns + r * k);
    }
}

EXTERN_C GLOBAL void topk_merge_double(
    const double* values, const i64* columns, i64 rows, i64 candidates, i64 k, double lowest, double* out_values,
    i64* out_columns)
{
    FOR_EACH(r, rows) {
        merge_row(values + r * candidates, columns + r * candidates, candidates, k, lowest, out_values + r * k,
                  out_columns + r * k);
    }
}
