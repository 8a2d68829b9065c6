/* qnpu_file.h — layout constants of the .qnpu container and its CRC-32. Private to lib/ and the
 * tests. The format is documented completely in docs/formats.md, section ".qnpu (quantized
 * model)"; the numbers below are that document's, byte offsets relative to the start of the
 * structure they belong to. Everything is little-endian. */
#ifndef QNPU_EXPORT_QNPU_FILE_H
#define QNPU_EXPORT_QNPU_FILE_H

#include <stddef.h>
#include <stdint.h>

#define QNPU__QF_MAGIC "QNPU"
#define QNPU__QF_ALIGN 64                 /* every section starts at a multiple of this        */
#define QNPU__QF_HEADER_SIZE 64
#define QNPU__QF_ENTRY_SIZE 32
#define QNPU__QF_MAX_SECTIONS (1u << 20)

/* The file header (64 bytes at offset 0). */
enum {
    QNPU__QH_MAGIC = 0,            /* "QNPU"                                                    */
    QNPU__QH_FORMAT_VERSION = 4,   /* u32 QNPU_FORMAT_VERSION                                   */
    QNPU__QH_LIB_VERSION = 8,      /* u32 QNPU_VERSION_NUMBER of the writer                     */
    QNPU__QH_HEADER_SIZE = 12,     /* u32 64                                                    */
    QNPU__QH_SECTION_COUNT = 16,   /* u32 entries in the section table                          */
    QNPU__QH_ENTRY_SIZE = 20,      /* u32 32                                                    */
    QNPU__QH_TABLE_OFFSET = 24,    /* u64 64 (the table follows the header)                     */
    QNPU__QH_FILE_SIZE = 32,       /* u64 total file size                                       */
    QNPU__QH_CRC = 40,             /* u32 CRC-32 of header + table with this field as zero      */
    QNPU__QH_FLAGS = 44,           /* u32 0                                                     */
    QNPU__QH_LIB_VERSION_STR = 48  /* char[16] QNPU_VERSION_STRING of the writer, NUL-padded    */
};

/* One section-table entry (32 bytes). */
enum {
    QNPU__QE_ID = 0,      /* u32 section id (below)                                             */
    QNPU__QE_INDEX = 4,   /* u32 which one: layer * 7 + linear for LINEAR, the layer for R4     */
    QNPU__QE_OFFSET = 8,  /* u64 from the start of the file, a multiple of 64                   */
    QNPU__QE_SIZE = 16,   /* u64 bytes                                                          */
    QNPU__QE_CRC = 24,    /* u32 CRC-32 of the section's bytes                                  */
    QNPU__QE_ALIGN = 28,  /* u16 64                                                             */
    QNPU__QE_FLAGS = 30   /* u16 bit 0: optional (a reader may skip it if it does not know id)  */
};
#define QNPU__QE_FLAG_OPTIONAL 1u

/* Section ids, in the order the sections must appear. */
enum {
    QNPU__QS_CONFIG = 1,
    QNPU__QS_EMBEDDING = 2,
    QNPU__QS_LINEAR = 3,
    QNPU__QS_LM_HEAD = 4,
    QNPU__QS_QP = 5,
    QNPU__QS_R4 = 6,
    QNPU__QS_VOCAB = 7
};

#define QNPU__QF_CONFIG_SIZE 136
#define QNPU__QF_CONFIG_HAS_R4 1u          /* config flags bit 0: the model has an R4 table    */
#define QNPU__QF_LINEAR_HEADER 64
#define QNPU__QF_LINEAR_HAS_BIAS 1u
#define QNPU__QF_QP_RECORD 12
#define QNPU__QF_R4_HEADER 64
#define QNPU__QF_VOCAB_HEADER 16
#define QNPU__QF_VOCAB_HAS_TYPES 1u
#define QNPU__QF_VOCAB_HAS_BPE 2u          /* vocab flags bit 1: a byte-level BPE follows      */

/* R4 dense-factor encodings (r4 header field `dense`). */
enum { QNPU__QF_DENSE_NONE = 0, QNPU__QF_DENSE_PM1 = 1, QNPU__QF_DENSE_F64 = 2 };

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as zlib's crc32): pass 0 first, then the
 * previous result to continue. crc32("123456789") = 0xCBF43926. Thread-safe. */
uint32_t qnpu__crc32(uint32_t crc, const void *data, size_t n);

#endif
