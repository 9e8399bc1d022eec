#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

// OPENSSL_free is a function-like macro, which Swift does not import.
static inline void COpenSSL_free(void *pointer) { OPENSSL_free(pointer); }
#endif
