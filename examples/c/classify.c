/*
 * classify: a small command-line program on the skinlesion C API.
 *
 *   classify [--overlay DIR] MODEL.json IMAGE...
 *
 * prints one line per image: path, ISIC code, display name, calibrated confidence, whether
 * the answer is a cancer, and why it is Unknown ("-" when it is not; "not_dermoscopy" when the
 * image does not look like dermoscopy at all). With --overlay, it also writes DIR/N.png for the
 * N-th image (from 1): the image with where the model looked for its best guess laid over it.
 * Research and education only: not a medical device.
 *
 * Build (from the repository, after `cargo build -p skinlesion-ffi`):
 *   cc examples/c/classify.c $(PKG_CONFIG_PATH=target/debug pkg-config --cflags --libs skinlesion)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Writes `len` bytes to `path`; 0 on success. */
static int write_file(const char *path, const unsigned char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t written = fwrite(data, 1, len, f);
  return (fclose(f) != 0 || written != len) ? -1 : 0;
}

/* Classifies and explains one image; writes its overlay to `dir`/`n`.png. */
static skinlesion_status explain(const skinlesion_classifier *classifier, const unsigned char *data,
                                 size_t len, const char *dir, int n, skinlesion_prediction *prediction) {
  skinlesion_explanation *explanation = NULL;
  skinlesion_status status =
      skinlesion_explain_encoded(classifier, data, len, SKINLESION_LESION_CLASS_UNKNOWN, &explanation);
  if (status == SKINLESION_STATUS_OK) status = skinlesion_explanation_prediction(explanation, prediction);
  const uint8_t *png = NULL;
  size_t png_len = 0;
  if (status == SKINLESION_STATUS_OK) status = skinlesion_explanation_overlay_png(explanation, &png, &png_len);
  if (status == SKINLESION_STATUS_OK) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%d.png", dir, n);
    if (write_file(path, png, png_len) != 0) {
      fprintf(stderr, "%s: cannot write\n", path);
      status = SKINLESION_STATUS_INVALID_ARGUMENT;
    }
  }
  skinlesion_explanation_free(explanation);
  return status;
}

int main(int argc, char **argv) {
  const char *overlay_dir = NULL;
  if (argc > 2 && strcmp(argv[1], "--overlay") == 0) {
    overlay_dir = argv[2];
    argv += 2;
    argc -= 2;
  }
  if (argc < 3) {
    fprintf(stderr, "usage: %s [--overlay DIR] MODEL.json IMAGE...\n", argv[0]);
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
    status = overlay_dir ? explain(classifier, data, len, overlay_dir, i - 1, &prediction)
                         : skinlesion_classify_encoded(classifier, data, len, &prediction);
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
