#include "comm/build_info.h"

#include <mpi.h>
#ifdef VIA_HAVE_NCCL
#include <nccl.h>
#endif

namespace via::comm {

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, len);
  if (auto nl = s.find_first_of("\r\n,"); nl != std::string::npos) s.resize(nl);
  return s;
}

std::string nccl_version() {
#ifdef VIA_HAVE_NCCL
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
#else
  return "";
#endif
}

}  // namespace via::comm
