// Data-parallel communication on libtorch's own c10d: a TCPStore for the
// rendezvous (rank 0 serves it) and a ProcessGroupGloo for the collectives,
// both compiled into libtorch_cpu.so. Called from src/dist.rs; errors are
// returned as strings, never thrown across the C boundary.
//
// The PyPI libtorch ships c10d's headers but not gloo's, which
// ProcessGroupGloo.hpp includes: src/gloo_decl/ declares the few gloo types
// that header names (only pointers to them are ever held here).
#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <exception>
#include <string>
#include <vector>

namespace {

thread_local std::string last_error;

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  std::chrono::milliseconds timeout;
};

template <typename F>
const char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    last_error = e.what_without_backtrace();  // the message, not the C++ stack
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return last_error.c_str();
}

}  // namespace

extern "C" {

// Joins the group of `world` ranks whose store is at host:port: served by
// rank 0, or (agent_store = 1) by a launcher such as torchrun's agent, every
// key then under `prefix`. Every rank waits up to `timeout_ms` for the
// others, and every later collective fails after that long without its peers.
const char* lpo_dist_connect(const char* host, int port, int rank, int world, long long timeout_ms,
                             int threads, int agent_store, const char* prefix, Group** out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = rank == 0 && agent_store == 0;
    options.numWorkers = static_cast<std::size_t>(world);
    options.waitWorkers = agent_store == 0;
    options.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    if (prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    auto gloo_options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    gloo_options->threads = threads;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo_options);
    *out = new Group{store, gloo, timeout};
  });
}

// In place: `t` becomes the elementwise sum (op 0) or maximum (op 1) of
// every rank's `t`.
const char* lpo_dist_allreduce(Group* g, const at::Tensor* t, int op) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::AllreduceOptions options;
    options.reduceOp = op == 1 ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    options.timeout = g->timeout;
    g->gloo->allreduce(tensors, options)->wait(g->timeout);
  });
}

// Sets `key` in the rendezvous store.
const char* lpo_dist_store_set(Group* g, const char* key, const char* value) {
  return guarded([&] {
    std::string v(value);
    g->store->set(std::string(key), std::vector<uint8_t>(v.begin(), v.end()));
  });
}

// *found = 1 when `key` is in the rendezvous store (without waiting).
const char* lpo_dist_store_check(Group* g, const char* key, int* found) {
  return guarded([&] { *found = g->store->check({std::string(key)}) ? 1 : 0; });
}

void lpo_dist_free(Group* g) { delete g; }

}  // extern "C"
