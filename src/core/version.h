/* version.h - the version Selor reports (selor -V, logs, selorctl). */
#ifndef SELOR_VERSION
#define SELOR_VERSION "0.1.0"
#endif
