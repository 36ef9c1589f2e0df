/* libcascade public API. Stable Cascade text-to-image engine.
 * Opaque handles, errors as negative codes plus a message. (Grows with the
 * pipeline; no public struct will ever change size.) */
#ifndef CASCADE_H
#define CASCADE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Library version, "MAJOR.MINOR.PATCH". */
const char *cascade_version(void);
/* Message for the last failing call on this thread. */
const char *cascade_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
