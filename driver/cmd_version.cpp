// `via version`: via's version and those of the libraries it was built with.
#include <hdf5.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <iostream>

extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
}

#include "comm/build_info.h"
#include "driver/options.h"

#ifndef VIA_VERSION
#define VIA_VERSION "unknown"
#endif

namespace via::driver {

int cmd_version(const Args& args) {
  if (!parse_options("via version", po::options_description("options"), args)) return 0;
  unsigned h5_major = 0, h5_minor = 0, h5_release = 0;
  H5get_libversion(&h5_major, &h5_minor, &h5_release);
  const std::string nccl = comm::nccl_version();
  std::cout << "via " << VIA_VERSION << "\n"
            << "libtorch " << TORCH_VERSION << "\n"
            << "FFmpeg " << av_version_info() << " (libavformat " << LIBAVFORMAT_IDENT << ")\n"
            << "HDF5 " << h5_major << "." << h5_minor << "." << h5_release << "\n"
            << "MPI " << comm::mpi_library_version() << "\n"
            << "CUDA " << (torch::cuda::is_available() ? "available, " + std::to_string(torch::cuda::device_count()) + " device(s)" : "not available") << "\n"
            << "NCCL " << (nccl.empty() ? "not built in" : nccl) << "\n";
  return 0;
}

}  // namespace via::driver
