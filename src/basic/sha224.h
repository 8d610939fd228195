/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA224_DIGEST_SIZE 28

/**
 * sha224() - FIPS 180-4 SHA-224 of a buffer. Own implementation: the volume ID
 * needs nothing else from a crypto library.
 */
void sha224(const void *data, size_t len, uint8_t out[SHA224_DIGEST_SIZE]);
