// See README.md: a declaration-only stand-in for gloo's header of this name.
#pragma once
#include <chrono>
namespace gloo {
class Context {
 public:
  // Named by ProcessGroupGloo::setTimeout's inline body, which lpo never calls.
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
