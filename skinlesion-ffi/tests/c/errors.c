/*
 * Every error path of the C API, driven from C (run under valgrind memcheck by tests/c_api.rs).
 *
 *   errors MODEL.json IMAGE.jpg BAD_CHECKSUM_MODEL.json
 *
 * Exits 0 when every check passes; prints each failed check.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skinlesion.h"

static int failures = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                          \
    }                                                                      \
  } while (0)

/* The call fails with `expected`, and explains itself. */
#define EXPECT_STATUS(call, expected)                                                 \
  do {                                                                                \
    skinlesion_status got_ = (call);                                                  \
    if (got_ != (expected)) {                                                         \
      fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n", __FILE__, __LINE__, \
              #call, (int)got_, skinlesion_last_error_message(), (int)(expected));   \
      failures++;                                                                     \
    } else if (got_ != SKINLESION_STATUS_OK && !*skinlesion_last_error_message()) {   \
      fprintf(stderr, "%s:%d: %s gave no message\n", __FILE__, __LINE__, #call);       \
      failures++;                                                                     \
    }                                                                                 \
  } while (0)

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *data = malloc(size > 0 ? (size_t)size : 1);
  *len = fread(data, 1, (size_t)size, f);
  fclose(f);
  return data;
}

static int same_prediction(const skinlesion_prediction *a, const skinlesion_prediction *b) {
  if (a->lesion_class != b->lesion_class || a->best_guess != b->best_guess) return 0;
  for (int i = 0; i < SKINLESION_DIAGNOSIS_COUNT; i++) {
    float d = a->probabilities[i] - b->probabilities[i];
    if (d > 1e-5f || d < -1e-5f || a->has_probability[i] != b->has_probability[i]) return 0;
  }
  return 1;
}

/* A synthetic lesion-coloured gradient, w×h RGB, packed. */
static unsigned char *gradient(uint32_t w, uint32_t h) {
  unsigned char *rgb = malloc((size_t)w * h * 3);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++) {
      unsigned char *p = rgb + ((size_t)y * w + x) * 3;
      p[0] = (unsigned char)(150 + x % 100);
      p[1] = (unsigned char)(90 + y % 80);
      p[2] = (unsigned char)(70 + (x + y) % 60);
    }
  return rgb;
}

struct thread_job {
  const skinlesion_classifier *classifier;
  const unsigned char *jpeg;
  size_t jpeg_len;
  const skinlesion_prediction *expected;
  int ok;
};

static void *classify_in_thread(void *arg) {
  struct thread_job *job = arg;
  job->ok = 1;
  for (int round = 0; round < 3; round++) {
    skinlesion_prediction p;
    if (skinlesion_classify_encoded(job->classifier, job->jpeg, job->jpeg_len, &p) !=
            SKINLESION_STATUS_OK ||
        !same_prediction(&p, job->expected))
      job->ok = 0;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL.json IMAGE.jpg BAD_CHECKSUM_MODEL.json\n", argv[0]);
    return 2;
  }
  const char *model = argv[1], *bad_checksum = argv[3];
  size_t jpeg_len = 0;
  unsigned char *jpeg = read_file(argv[2], &jpeg_len);
  CHECK(jpeg != NULL && jpeg_len > 100);

  /* Static queries. */
  CHECK(strcmp(skinlesion_version(), "") != 0);
  CHECK(strstr(skinlesion_disclaimer(), "not a medical device") != NULL);
  CHECK(skinlesion_class_count() == SKINLESION_DIAGNOSIS_COUNT + 1);
  CHECK(strcmp(skinlesion_class_code(SKINLESION_LESION_CLASS_MELANOMA), "MEL") == 0);
  CHECK(strcmp(skinlesion_class_name(SKINLESION_LESION_CLASS_MELANOMA), "Melanoma") == 0);
  CHECK(strcmp(skinlesion_class_code(SKINLESION_LESION_CLASS_UNKNOWN), "UNK") == 0);
  CHECK(skinlesion_class_is_cancerous(SKINLESION_LESION_CLASS_BASAL_CELL_CARCINOMA));
  CHECK(!skinlesion_class_is_cancerous(SKINLESION_LESION_CLASS_ACTINIC_KERATOSIS));
  CHECK(skinlesion_class_code(9) == NULL && skinlesion_class_name(1000) == NULL);
  CHECK(strcmp(skinlesion_unknown_reason_code(SKINLESION_UNKNOWN_REASON_NOT_DERMOSCOPY), "not_dermoscopy") == 0);
  CHECK(strcmp(skinlesion_unknown_reason_code(SKINLESION_UNKNOWN_REASON_NONE), "") == 0);
  CHECK(skinlesion_unknown_reason_code(3) == NULL);
  CHECK(!skinlesion_class_is_cancerous(0xffffffffu));
  CHECK(strcmp(skinlesion_status_description(SKINLESION_STATUS_DECODE_ERROR), "undecodable image") == 0);
  CHECK(strcmp(skinlesion_status_description(12345), "unknown status") == 0);

  /* Freeing NULL does nothing. */
  skinlesion_options_free(NULL);
  skinlesion_classifier_free(NULL);

  /* Options. */
  EXPECT_STATUS(skinlesion_options_new(NULL), SKINLESION_STATUS_NULL_ARGUMENT);
  skinlesion_options *options = NULL;
  EXPECT_STATUS(skinlesion_options_new(&options), SKINLESION_STATUS_OK);
  CHECK(strcmp(skinlesion_last_error_message(), "") == 0);
  EXPECT_STATUS(skinlesion_options_set_device(NULL, "cpu"), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_device(options, NULL), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_device(options, "quantum"), SKINLESION_STATUS_CONFIG_ERROR);
  CHECK(strstr(skinlesion_last_error_message(), "quantum") != NULL);
  EXPECT_STATUS(skinlesion_options_set_device(options, "\xff\xfe"), SKINLESION_STATUS_INVALID_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_threads(options, 0), SKINLESION_STATUS_INVALID_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_threads(NULL, 1), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_max_pixels(options, 0), SKINLESION_STATUS_INVALID_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_max_bytes(options, 0), SKINLESION_STATUS_INVALID_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_device(options, "cpu"), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_options_set_threads(options, 2), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_options_set_precision(NULL, "fp32"), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_precision(options, NULL), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_options_set_precision(options, "fp16"), SKINLESION_STATUS_CONFIG_ERROR);
  CHECK(strstr(skinlesion_last_error_message(), "auto, fp32, bf16 or bf16-checked") != NULL);

  /* Loading. */
  skinlesion_classifier *classifier = NULL;
  EXPECT_STATUS(skinlesion_classifier_new(NULL, options, &classifier), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classifier_new(model, options, NULL), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classifier_new("/nonexistent/model.json", options, &classifier),
                SKINLESION_STATUS_MODEL_NOT_FOUND);
  CHECK(strstr(skinlesion_last_error_message(), "/nonexistent/model.json") != NULL);
  EXPECT_STATUS(skinlesion_classifier_new(bad_checksum, options, &classifier),
                SKINLESION_STATUS_CHECKSUM_MISMATCH);
  EXPECT_STATUS(skinlesion_classifier_new(argv[2], options, &classifier), SKINLESION_STATUS_MODEL_CORRUPT);
  CHECK(classifier == NULL);
  /* The test model has no bf16 network: asked for, it is a configuration error. */
  EXPECT_STATUS(skinlesion_options_set_precision(options, "bf16"), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classifier_new(model, options, &classifier), SKINLESION_STATUS_CONFIG_ERROR);
  CHECK(strstr(skinlesion_last_error_message(), "no bf16 network") != NULL);
  EXPECT_STATUS(skinlesion_options_set_precision(options, "bf16-checked"), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classifier_new(model, options, &classifier), SKINLESION_STATUS_CONFIG_ERROR);
  CHECK(strstr(skinlesion_last_error_message(), "no bf16 network") != NULL);
  EXPECT_STATUS(skinlesion_options_set_precision(options, "auto"), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classifier_new(model, options, &classifier), SKINLESION_STATUS_OK);
  CHECK(classifier != NULL);
  CHECK(strcmp(skinlesion_classifier_precision(classifier), "fp32") == 0);
  CHECK(skinlesion_classifier_precision(NULL) == NULL);

  /* Encoded bytes. */
  skinlesion_prediction reference, p;
  EXPECT_STATUS(skinlesion_classify_encoded(classifier, jpeg, jpeg_len, &reference), SKINLESION_STATUS_OK);
  CHECK(reference.confidence > 0.0f && reference.confidence <= 1.0f);
  CHECK(reference.is_unknown == (reference.lesion_class == SKINLESION_LESION_CLASS_UNKNOWN));
  CHECK(reference.is_unknown == (reference.unknown_reason != SKINLESION_UNKNOWN_REASON_NONE));
  CHECK(reference.has_ood_score && reference.ood_score > 0.0f); /* the test model has a gate */
  float sum = 0.0f;
  for (int i = 0; i < SKINLESION_DIAGNOSIS_COUNT; i++) {
    CHECK(reference.has_probability[i]);
    sum += reference.probabilities[i];
  }
  CHECK(sum > 0.999f && sum < 1.001f);
  CHECK(reference.probabilities[reference.best_guess] == reference.confidence);
  EXPECT_STATUS(skinlesion_classify_encoded(NULL, jpeg, jpeg_len, &p), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classify_encoded(classifier, NULL, 10, &p), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classify_encoded(classifier, jpeg, jpeg_len, NULL), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classify_encoded(classifier, jpeg, 0, &p), SKINLESION_STATUS_EMPTY_INPUT);
  EXPECT_STATUS(skinlesion_classify_encoded(classifier, NULL, 0, &p), SKINLESION_STATUS_EMPTY_INPUT);
  const unsigned char junk[] = "this is not an image, it is a sentence of text";
  EXPECT_STATUS(skinlesion_classify_encoded(classifier, junk, sizeof junk, &p), SKINLESION_STATUS_UNSUPPORTED_FORMAT);
  EXPECT_STATUS(skinlesion_classify_encoded(classifier, jpeg, jpeg_len / 2, &p), SKINLESION_STATUS_DECODE_ERROR);

  /* Explanations: the tiny test model has no class maps, and bad arguments fail first. */
  skinlesion_explanation *explanation = NULL;
  EXPECT_STATUS(skinlesion_explain_encoded(classifier, jpeg, jpeg_len, SKINLESION_LESION_CLASS_UNKNOWN, &explanation),
                SKINLESION_STATUS_NO_CLASS_MAPS);
  CHECK(strstr(skinlesion_last_error_message(), "no class maps") != NULL);
  CHECK(explanation == NULL);
  EXPECT_STATUS(skinlesion_explain_encoded(NULL, jpeg, jpeg_len, SKINLESION_LESION_CLASS_UNKNOWN, &explanation),
                SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_explain_encoded(classifier, jpeg, jpeg_len, SKINLESION_LESION_CLASS_UNKNOWN, NULL),
                SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_explain_encoded(classifier, jpeg, jpeg_len, 99, &explanation),
                SKINLESION_STATUS_INVALID_ARGUMENT);
  EXPECT_STATUS(skinlesion_explain_pixels(classifier, NULL, SKINLESION_LESION_CLASS_UNKNOWN, &explanation),
                SKINLESION_STATUS_NULL_ARGUMENT);
  skinlesion_explanation_free(NULL);
  uint32_t map_w = 7, map_h = 7;
  CHECK(skinlesion_explanation_heatmap(NULL, &map_w, &map_h) == NULL && map_w == 0 && map_h == 0);
  CHECK(skinlesion_explanation_class(NULL) == SKINLESION_LESION_CLASS_UNKNOWN);
  EXPECT_STATUS(skinlesion_explanation_prediction(NULL, &p), SKINLESION_STATUS_NULL_ARGUMENT);
  const uint8_t *png = NULL;
  size_t png_len = 0;
  EXPECT_STATUS(skinlesion_explanation_overlay_png(NULL, &png, &png_len), SKINLESION_STATUS_NULL_ARGUMENT);

  /* Limits: a 200x150 JPEG against 1000 pixels and 100 bytes. */
  skinlesion_options *tight = NULL;
  skinlesion_classifier *tight_classifier = NULL;
  EXPECT_STATUS(skinlesion_options_new(&tight), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_options_set_device(tight, "cpu"), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_options_set_max_pixels(tight, 1000), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classifier_new(model, tight, &tight_classifier), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classify_encoded(tight_classifier, jpeg, jpeg_len, &p), SKINLESION_STATUS_IMAGE_TOO_LARGE);
  skinlesion_classifier_free(tight_classifier);
  tight_classifier = NULL;
  EXPECT_STATUS(skinlesion_options_set_max_pixels(tight, 1000000), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_options_set_max_bytes(tight, 100), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classifier_new(model, tight, &tight_classifier), SKINLESION_STATUS_OK);
  skinlesion_options_free(tight);
  EXPECT_STATUS(skinlesion_classify_encoded(tight_classifier, jpeg, jpeg_len, &p), SKINLESION_STATUS_INPUT_TOO_LARGE);
  skinlesion_classifier_free(tight_classifier);

  /* Raw pixels: packed RGB and padded RGBA of the same image agree. */
  const uint32_t w = 64, h = 48;
  unsigned char *rgb = gradient(w, h);
  const size_t rgba_stride = w * 4 + 16;
  unsigned char *rgba = calloc(rgba_stride * h, 1);
  for (uint32_t y = 0; y < h; y++)
    for (uint32_t x = 0; x < w; x++) {
      memcpy(rgba + y * rgba_stride + x * 4, rgb + ((size_t)y * w + x) * 3, 3);
      rgba[y * rgba_stride + x * 4 + 3] = 255;
    }
  skinlesion_raw_image packed = {rgb, (size_t)w * h * 3, w, h, (size_t)w * 3, SKINLESION_PIXEL_FORMAT_RGB8};
  skinlesion_raw_image padded = {rgba, rgba_stride * h, w, h, rgba_stride, SKINLESION_PIXEL_FORMAT_RGBA8};
  skinlesion_prediction from_rgb, from_rgba;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &packed, &from_rgb), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &padded, &from_rgba), SKINLESION_STATUS_OK);
  CHECK(same_prediction(&from_rgb, &from_rgba));

  skinlesion_raw_image bad = packed;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, NULL, &p), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classify_pixels(NULL, &packed, &p), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &packed, NULL), SKINLESION_STATUS_NULL_ARGUMENT);
  bad.stride = w * 3 - 1;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_INVALID_PIXELS);
  bad = packed;
  bad.len -= 1;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_INVALID_PIXELS);
  bad = packed;
  bad.width = 0;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_INVALID_PIXELS);
  bad = packed;
  bad.format = 7;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_INVALID_PIXELS);
  bad = packed;
  bad.data = NULL;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_NULL_ARGUMENT);
  bad = packed;
  bad.len = 0;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_INVALID_PIXELS);
  bad = packed;
  bad.width = 100000;
  bad.height = 100000;
  bad.stride = (size_t)100000 * 3;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_IMAGE_TOO_LARGE);
  bad = packed;
  bad.stride = (size_t)-1;
  EXPECT_STATUS(skinlesion_classify_pixels(classifier, &bad, &p), SKINLESION_STATUS_INVALID_PIXELS);

  /* Batches: each image its own result; the call reports the first failure. */
  skinlesion_encoded_image encoded[4] = {{jpeg, jpeg_len}, {junk, sizeof junk}, {NULL, 5}, {jpeg, jpeg_len}};
  skinlesion_prediction out[4];
  skinlesion_status statuses[4];
  EXPECT_STATUS(skinlesion_classify_encoded_batch(classifier, encoded, 4, out, statuses),
                SKINLESION_STATUS_UNSUPPORTED_FORMAT);
  CHECK(strstr(skinlesion_last_error_message(), "image 1") != NULL);
  CHECK(statuses[0] == SKINLESION_STATUS_OK && same_prediction(&out[0], &reference));
  CHECK(statuses[1] == SKINLESION_STATUS_UNSUPPORTED_FORMAT && out[1].is_unknown && !out[1].has_probability[0]);
  CHECK(statuses[2] == SKINLESION_STATUS_NULL_ARGUMENT);
  CHECK(statuses[3] == SKINLESION_STATUS_OK && same_prediction(&out[3], &reference));
  EXPECT_STATUS(skinlesion_classify_encoded_batch(classifier, encoded, 1, out, NULL), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classify_encoded_batch(classifier, NULL, 0, NULL, NULL), SKINLESION_STATUS_OK);
  EXPECT_STATUS(skinlesion_classify_encoded_batch(classifier, NULL, 2, out, statuses), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classify_encoded_batch(classifier, encoded, 2, NULL, statuses), SKINLESION_STATUS_NULL_ARGUMENT);
  EXPECT_STATUS(skinlesion_classify_encoded_batch(NULL, encoded, 2, out, statuses), SKINLESION_STATUS_NULL_ARGUMENT);

  skinlesion_raw_image raws[3] = {packed, bad, padded};
  EXPECT_STATUS(skinlesion_classify_pixels_batch(classifier, raws, 3, out, statuses), SKINLESION_STATUS_INVALID_PIXELS);
  CHECK(statuses[0] == SKINLESION_STATUS_OK && same_prediction(&out[0], &from_rgb));
  CHECK(statuses[1] == SKINLESION_STATUS_INVALID_PIXELS);
  CHECK(statuses[2] == SKINLESION_STATUS_OK && same_prediction(&out[2], &from_rgb));

  /* One classifier, four threads at once. */
  pthread_t threads[4];
  struct thread_job jobs[4];
  for (int t = 0; t < 4; t++) {
    jobs[t] = (struct thread_job){classifier, jpeg, jpeg_len, &reference, 0};
    CHECK(pthread_create(&threads[t], NULL, classify_in_thread, &jobs[t]) == 0);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(threads[t], NULL);
    CHECK(jobs[t].ok);
  }

  skinlesion_classifier_free(classifier);
  skinlesion_options_free(options);
  free(rgb);
  free(rgba);
  free(jpeg);
  if (failures) fprintf(stderr, "%d checks failed\n", failures);
  else printf("all checks passed\n");
  return failures ? 1 : 0;
}
