/*
 * classify: a small command-line program on the skinlesion C API.
 *
 *   classify MODEL.json IMAGE...
 *
 * prints one line per image: path, ISIC code, display name, calibrated confidence, whether
 * the answer is a cancer, and why it is Unknown ("-" when it is not; "not_dermoscopy" when the
 * image does not look like dermoscopy at all). Research and education only: not a medical
 * device.
 *
 * Build (from the repository, after `cargo build -p skinlesion-ffi`):
 *   cc examples/c/classify.c $(PKG_CONFIG_PATH=target/debug pkg-config --cflags --libs skinlesion)
 */
#include <stdio.h>
#include <stdlib.h>

#include "skinlesion.h"

/* Reads a whole file into memory; the caller frees it. */
static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *data = NULL;
  size_t cap = 0, used = 0, n;
  do {
    if (used == cap) {
      cap = cap ? cap * 2 : 1 << 16;
      unsigned char *grown = realloc(data, cap);
      if (!grown) { free(data); fclose(f); return NULL; }
      data = grown;
    }
    n = fread(data + used, 1, cap - used, f);
    used += n;
  } while (n > 0);
  int failed = ferror(f);
  fclose(f);
  if (failed) { free(data); return NULL; }
  *len = used;
  return data;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.json IMAGE...\n", argv[0]);
    return 2;
  }
  fprintf(stderr, "%s\n", skinlesion_disclaimer());

  skinlesion_classifier *classifier = NULL;
  skinlesion_status status = skinlesion_classifier_new(argv[1], NULL, &classifier);
  if (status != SKINLESION_STATUS_OK) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], skinlesion_last_error_message());
    return 1;
  }

  int failures = 0;
  for (int i = 2; i < argc; i++) {
    size_t len = 0;
    unsigned char *data = read_file(argv[i], &len);
    if (!data) {
      fprintf(stderr, "%s: cannot read file\n", argv[i]);
      failures++;
      continue;
    }
    skinlesion_prediction prediction;
    status = skinlesion_classify_encoded(classifier, data, len, &prediction);
    free(data);
    if (status != SKINLESION_STATUS_OK) {
      fprintf(stderr, "%s: %s\n", argv[i], skinlesion_last_error_message());
      failures++;
      continue;
    }
    const char *reason = skinlesion_unknown_reason_code(prediction.unknown_reason);
    printf("%s\t%s\t%s\t%.6f\t%s\t%s\n", argv[i], skinlesion_class_code(prediction.lesion_class),
           skinlesion_class_name(prediction.lesion_class), prediction.confidence,
           prediction.is_cancerous ? "cancerous" : "not cancerous", *reason ? reason : "-");
  }

  skinlesion_classifier_free(classifier);
  return failures ? 1 : 0;
}
