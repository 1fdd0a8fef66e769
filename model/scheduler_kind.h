#pragma once
// The sampling methods via implements, by their command-line names, apart
// from the schedulers themselves (model/scheduler.h) so that settings can
// hold one without the tensor headers.
#include <array>
#include <string>

namespace via::model {

/// DpmSolver: DPM-Solver++ (2M by default) with the config's sigmas;
/// DpmSolverKarras: the same with Karras sigmas whatever the config says.
enum class SchedulerKind { EulerAncestral, Euler, Ddim, DpmSolver, DpmSolverKarras };
/// Every kind, in the order messages and help list them.
inline constexpr std::array<SchedulerKind, 5> kSchedulerKinds = {
    SchedulerKind::EulerAncestral, SchedulerKind::Euler, SchedulerKind::Ddim, SchedulerKind::DpmSolver,
    SchedulerKind::DpmSolverKarras};

/// "euler_a" | "euler" | "ddim" | "dpmpp_2m" | "dpmpp_2m_karras" -> kind;
/// anything else throws ModelError naming it and the supported names.
SchedulerKind scheduler_kind_from_name(const std::string& name);
/// The command-line name of a kind ("euler_a", "euler", "ddim", "dpmpp_2m", "dpmpp_2m_karras").
std::string scheduler_name(SchedulerKind kind);
/// "euler_a, euler, ddim, dpmpp_2m, dpmpp_2m_karras": for messages.
std::string supported_scheduler_names();

}  // namespace via::model
