#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
// HMACSHA256 runs over SHA256_Init/Update/Final, which OpenSSL 3 marks deprecated (they stay in its
// ABI): their context is a plain struct that can be copied, unlike an EVP_MD_CTX, whose copy
// allocates. See Sources/StrongroomCrypto/MAC/HMACSHA256.swift.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

// OPENSSL_free is a function-like macro, which Swift does not import.
static inline void COpenSSL_free(void *pointer) { OPENSSL_free(pointer); }
// __builtin_prefetch, which Swift cannot call: the subject-key cache starts loading the lines of a
// lookup it is told of ahead (StrongroomCrypto/Keys/KeyCache.swift, `prefetch`).
static inline void COpenSSL_prefetch(const void *address) { __builtin_prefetch(address); }
#endif
