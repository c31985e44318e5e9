/*
 * env.c: environment access for the dispatcher. Every moekit variable (MOEKIT_MAX_ISA, MOEKIT_NUM_THREADS,
 * MOEKIT_BIND, MOEKIT_VERBOSE) is read through mki_getenv, and each caller reads it once (under pthread_once or
 * into an atomic cache), so a later setenv() by the application has no effect on a running process.
 */
#include "internal.h"

#include <stdlib.h>

const char *mki_getenv(const char *name) {
    if (name == NULL) return NULL;
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}
