/* CLIP byte-level BPE tokenizer (OpenAI CLIP simple_tokenizer.py, HF tokenization_clip.py).
 *
 * The vocabulary is read at run time from a folder holding vocab.json and
 * merges.txt (the HF stable-cascade / CLIP files); nothing is compiled in.
 *
 * Pipeline for a prompt (matches the HF fast CLIPTokenizer, the official path):
 *   1. the prompt must be valid UTF-8: invalid input is REJECTED with CS_EARG
 *      and the byte offset of the first bad sequence (overlong forms,
 *      surrogates and code points above U+10FFFF count as invalid). We do not
 *      substitute U+FFFD because a silently changed prompt gives different
 *      tokens than the user meant; the caller can fix the encoding.
 *   2. NFC (utf8proc), every run of Unicode White_Space -> one ' ', Unicode
 *      lowercase (utf8proc simple mapping, plus U+0130 -> "i\u0307" as Rust's
 *      full mapping does). No ftfy, no HTML unescaping (neither does HF fast).
 *   3. before step 2, the raw text is split at the exact (case-sensitive)
 *      strings "<|startoftext|>" / "<|endoftext|>", which become their ids,
 *      as HF's non-normalised added tokens do. Each piece is cleaned up and
 *      split by the PCRE2 pattern (UTF + UCP)
 *      's|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^ \p{L}\p{N}]+
 *      Deviations from the spec's wording, both matching the HF fast
 *      tokenizer: case-sensitive matching (the text is already lowercase;
 *      differs only for oddities such as "'ſ"), and ' ' instead of \s (after
 *      clean-up the only White_Space left is ' '; U+180E stays a symbol).
 *   4. each word: UTF-8 bytes -> byte-to-unicode symbols, last one + "</w>",
 *      BPE merges by rank, symbols -> ids. Words are cached per call, so
 *      long prompts of ordinary words are fast (200 kB: ~10 ms); one word is
 *      quadratic in its length (a 100 kB word without spaces: seconds).
 *
 * Unicode tables are the system's (Debian 12: PCRE2 = Unicode 14, utf8proc =
 * Unicode 15). Code points assigned later (CJK Ext. H, new hieroglyphs...)
 * may split differently from HF, whose tables are newer; in a differential
 * test against HF transformers 5.24 on 5000 random strings these were the
 * only differences.
 *
 * A tokenizer is immutable after loading and may be shared between threads. */
#ifndef CS_TOKENIZER_H
#define CS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define CS_TOK_BOS 49406
#define CS_TOK_EOS 49407      /* also the pad token of Stable Cascade */
#define CS_TOK_CTX 77         /* CLIP context length */
#define CS_TOK_WORD_MAX 256   /* longer words are merged in pieces (BPE is quadratic) */

typedef struct cs_tokenizer cs_tokenizer;

/* Loads dir/vocab.json and dir/merges.txt. Errors name the file (and line). */
int cs_tokenizer_load(const char *dir, cs_tokenizer **out);
/* Byte-level fallback: the 512 byte symbols (same ids as the CLIP vocab),
 * BOS 49406, EOS 49407, no merges. Used by --demo when no files exist. */
int cs_tokenizer_bytes(cs_tokenizer **out);
void cs_tokenizer_free(cs_tokenizer *t);   /* NULL is fine */

/* Number of ids (max id + 1). */
int32_t cs_tokenizer_size(const cs_tokenizer *t);
/* Token string in the byte-to-unicode alphabet ("photo</w>"), or NULL for
 * an id without a string. */
const char *cs_token_str(const cs_tokenizer *t, int32_t id);

/* Full token list: BOS, every BPE token (no truncation), EOS. *ids is
 * malloc'ed (free()), *n its length. */
int cs_tokenize(const cs_tokenizer *t, const char *text, int32_t **ids, size_t *n);

/* Stable Cascade model input (doc/reference.md): BOS, the first 75
 * BPE tokens, EOS, then pad with EOS to 77; mask is 1 for BOS..EOS and 0 for
 * padding. *n_full (may be NULL) receives the untruncated length incl.
 * BOS/EOS so callers can warn about truncation. */
int cs_tokens_77(const cs_tokenizer *t, const char *text,
                 int32_t ids[CS_TOK_CTX], int32_t mask[CS_TOK_CTX], size_t *n_full);

/* Debug decoding (spec §4): ids -> text, specials skipped, "</w>" -> ' ',
 * bytes back through the inverse byte map, invalid UTF-8 kept as U+FFFD.
 * *text is malloc'ed. */
int cs_detokenize(const cs_tokenizer *t, const int32_t *ids, size_t n, char **text);

#endif
