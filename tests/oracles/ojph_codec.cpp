// OpenJPH's library (Debian's libopenjph-dev) as an oracle for wado's HTJ2K, with samples
// passed as 32-bit integers: the 0.9 command-line tools read and write signed raw files as
// unsigned (their round trip hides it), so signed images go through this instead.
//
//   ojph_codec decode IN.j2c OUT.i32             prints "WIDTH HEIGHT COMPONENTS BITS SIGNED";
//                                                writes samples interleaved, int32 little endian
//   ojph_codec encode IN.i32 W H C BITS SIGNED ORDER OUT.j2c [QSTEP]
//                                                lossless (or with QSTEP, irreversible 9/7 with
//                                                that step), 5 decompositions, 64x64 blocks,
//                                                ORDER "LRCP" or "RPCL"; colour transform for 3
//   ojph_codec reduced IN.j2c SKIP OUT.i32        decodes SKIP resolution levels fewer
//   ojph_codec bench IN.i32 W H C BITS N          encode and decode in memory N times (lossless,
//                                                RPCL); prints median milliseconds of each
//
// Built by the test that uses it: g++ -O2 -o ojph_codec ojph_codec.cpp -lopenjph
#include <openjph/ojph_arch.h>
#include <openjph/ojph_codestream.h>
#include <openjph/ojph_file.h>
#include <openjph/ojph_mem.h>
#include <openjph/ojph_params.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static int decode(const char* in, const char* out, ojph::ui32 skip) {
  ojph::j2c_infile file;
  file.open(in);
  ojph::codestream cs;
  // Reduced decoding reads prefixes of codestreams (tile-parts missing at the end).
  if (skip) cs.enable_resilience();
  cs.read_headers(&file);
  if (skip) cs.restrict_input_resolution(skip, skip);
  ojph::param_siz siz = cs.access_siz();
  ojph::ui32 nc = siz.get_num_components();
  ojph::ui32 w = siz.get_recon_width(0), h = siz.get_recon_height(0);
  cs.set_planar(false);
  cs.create();
  std::vector<int32_t> px((size_t)w * h * nc);
  for (ojph::ui32 y = 0; y < h; ++y) {
    for (ojph::ui32 c = 0; c < nc; ++c) {
      ojph::ui32 comp;
      ojph::line_buf* line = cs.pull(comp);
      for (ojph::ui32 x = 0; x < w; ++x) px[((size_t)y * w + x) * nc + comp] = line->i32[x];
    }
  }
  cs.close();
  FILE* f = fopen(out, "wb");
  fwrite(px.data(), 4, px.size(), f);
  fclose(f);
  printf("%u %u %u %u %d\n", w, h, nc, siz.get_bit_depth(0), siz.is_signed(0) ? 1 : 0);
  return 0;
}

static int encode(const char* in, ojph::ui32 w, ojph::ui32 h, ojph::ui32 nc, ojph::ui32 bits,
                  bool is_signed, const char* order, const char* out, float qstep) {
  std::vector<int32_t> px((size_t)w * h * nc);
  FILE* f = fopen(in, "rb");
  if (!f || fread(px.data(), 4, px.size(), f) != px.size()) {
    fprintf(stderr, "cannot read %s\n", in);
    return 1;
  }
  fclose(f);
  ojph::codestream cs;
  ojph::param_siz siz = cs.access_siz();
  siz.set_image_extent(ojph::point(w, h));
  siz.set_num_components(nc);
  for (ojph::ui32 c = 0; c < nc; ++c) siz.set_component(c, ojph::point(1, 1), bits, is_signed);
  siz.set_image_offset(ojph::point(0, 0));
  siz.set_tile_size(ojph::size(w, h));
  siz.set_tile_offset(ojph::point(0, 0));
  ojph::param_cod cod = cs.access_cod();
  cod.set_num_decomposition(5);
  cod.set_block_dims(64, 64);
  cod.set_progression_order(order);
  cod.set_color_transform(nc == 3);
  cod.set_reversible(qstep <= 0);
  if (qstep > 0) cs.access_qcd().set_irrev_quant(qstep);
  cs.set_planar(false);
  ojph::j2c_outfile file;
  file.open(out);
  cs.write_headers(&file);
  ojph::ui32 next;
  ojph::line_buf* line = cs.exchange(NULL, next);
  for (ojph::ui32 y = 0; y < h; ++y) {
    for (ojph::ui32 c = 0; c < nc; ++c) {
      for (ojph::ui32 x = 0; x < w; ++x) line->i32[x] = px[((size_t)y * w + x) * nc + next];
      line = cs.exchange(line, next);
    }
  }
  cs.flush();
  cs.close();
  return 0;
}

#include <algorithm>
#include <chrono>

// One in-memory lossless encode of the samples; returns the codestream.
static std::vector<ojph::ui8> encode_mem(const std::vector<int32_t>& px, ojph::ui32 w,
                                         ojph::ui32 h, ojph::ui32 nc, ojph::ui32 bits) {
  ojph::codestream cs;
  ojph::param_siz siz = cs.access_siz();
  siz.set_image_extent(ojph::point(w, h));
  siz.set_num_components(nc);
  for (ojph::ui32 c = 0; c < nc; ++c) siz.set_component(c, ojph::point(1, 1), bits, false);
  siz.set_tile_size(ojph::size(w, h));
  ojph::param_cod cod = cs.access_cod();
  cod.set_num_decomposition(5);
  cod.set_block_dims(64, 64);
  cod.set_progression_order("RPCL");
  cod.set_color_transform(nc == 3);
  cod.set_reversible(true);
  cs.set_planar(false);
  ojph::mem_outfile out;
  out.open();
  cs.write_headers(&out);
  ojph::ui32 next;
  ojph::line_buf* line = cs.exchange(NULL, next);
  for (ojph::ui32 y = 0; y < h; ++y)
    for (ojph::ui32 c = 0; c < nc; ++c) {
      for (ojph::ui32 x = 0; x < w; ++x) line->i32[x] = px[((size_t)y * w + x) * nc + next];
      line = cs.exchange(line, next);
    }
  cs.flush();
  std::vector<ojph::ui8> bytes(out.get_data(), out.get_data() + out.tell());
  cs.close();
  return bytes;
}

static int bench(const char* in, ojph::ui32 w, ojph::ui32 h, ojph::ui32 nc, ojph::ui32 bits,
                 int n) {
  std::vector<int32_t> px((size_t)w * h * nc);
  FILE* f = fopen(in, "rb");
  if (!f || fread(px.data(), 4, px.size(), f) != px.size()) return 1;
  fclose(f);
  std::vector<double> enc, dec;
  size_t size = 0;
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<ojph::ui8> cs_bytes = encode_mem(px, w, h, nc, bits);
    auto t1 = std::chrono::steady_clock::now();
    size = cs_bytes.size();
    ojph::mem_infile mi;
    mi.open(cs_bytes.data(), cs_bytes.size());
    ojph::codestream cs;
    cs.read_headers(&mi);
    cs.set_planar(false);
    cs.create();
    int64_t sum = 0;
    for (ojph::ui32 y = 0; y < h; ++y)
      for (ojph::ui32 c = 0; c < nc; ++c) {
        ojph::ui32 comp;
        ojph::line_buf* line = cs.pull(comp);
        sum += line->i32[0];
      }
    cs.close();
    auto t2 = std::chrono::steady_clock::now();
    enc.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    dec.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count() + (sum == 42 ? 0 : 0));
  }
  std::sort(enc.begin(), enc.end());
  std::sort(dec.begin(), dec.end());
  printf("%.3f %.3f %zu\n", enc[enc.size() / 2], dec[dec.size() / 2], size);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 8 && !strcmp(argv[1], "bench"))
    return bench(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]),
                 atoi(argv[7]));
  if (argc >= 4 && !strcmp(argv[1], "decode")) return decode(argv[2], argv[3], 0);
  if (argc >= 5 && !strcmp(argv[1], "reduced"))
    return decode(argv[2], argv[4], (ojph::ui32)atoi(argv[3]));
  if (argc >= 10 && !strcmp(argv[1], "encode"))
    return encode(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]),
                  atoi(argv[7]) != 0, argv[8], argv[9], argc >= 11 ? (float)atof(argv[10]) : 0.0f);
  fprintf(stderr, "usage: see the head of ojph_codec.cpp\n");
  return 2;
}
