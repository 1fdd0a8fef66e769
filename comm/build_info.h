#pragma once
#include <string>

namespace via::comm {

/// The MPI library's own version line (callable before MPI is initialised).
std::string mpi_library_version();

/// NCCL's version ("2.21.5"), or an empty string when via was built without NCCL.
std::string nccl_version();

}  // namespace via::comm
