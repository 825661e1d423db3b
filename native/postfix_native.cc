// postfix_native: the few system calls Node does not offer, kept small and boring.
// Every decision (flags, NUL conventions, locking order, error wording) is made in
// TypeScript (src/lib/native/index.ts, src/lib/tables/berkeley-db.ts); this file only
// forwards calls to libdb 5.3, to liblmdb (LMDB 0.9, as Postfix links it) and to the C
// library, and turns failures into exceptions that carry `errno` (a number), `code` (its
// name, such as "EWOULDBLOCK", for system errors) and `reason` (strerror(),
// db_strerror() or mdb_strerror() text, what Postfix prints).
//
//   openDb(home, file, type, readOnly, create, cacheSize, hashNelem) -> Db
//   Db: get(key) put(key, value, noOverwrite) del(key) sync() fd() cursor() close()
//   Cursor: get(first) close()
//   lmdbOpen(path, readOnly, mapSize) -> LmdbEnv
//   LmdbEnv: begin(readOnly) lookup(key) setMapSize(size) mapSize() maxKeySize() fd() sync() seek(after)
//            seekBatch(after, maxEntries, maxBytes) lastTxnId()
//            releaseMap() close()
//   LmdbTxn: put(key, value, noOverwrite) del(key) cursorGet(op, key) commit() abort()
//   flock(fd, op) fcntlLock(fd, type, wait) exchangeFiles(a, b) chroot(path) setsid()
//   dgramConnect(path) -> fd   dgramSend(fd, bytes)   (AF_UNIX datagrams: the postlog service)
//
// A table file may be truncated or overwritten while it is open (`cp new old`, `truncate`):
// touching a mapped page past the new end of file raises SIGBUS, and garbage pages can lead
// a library to a wild pointer (SIGSEGV). Every library call that reads table pages runs
// under a fault guard (see CatchingFaults) that turns such a signal into an error, and a
// read-only handle checks after each read that the file kept the size and mtime it had
// when opened, so that bytes of a file being rewritten are never answered. Either failure
// is errno ESTALE, and the handle stays stale: the table answers "retry" until it is
// reopened on the new file.

#include <napi.h>
#include "fault_guard.h"
#include <db.h>
#include <lmdb.h>
#include <malloc.h>
#include <v8.h>

#include <csetjmp>
#include <csignal>
#include <cerrno>
#include <cstdint>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <string>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace {

Napi::Error errnoError(Napi::Env env, int err, const std::string& what) {
  const char* text = err > 0 ? strerror(err) : db_strerror(err);
  Napi::Error e = Napi::Error::New(env, what + ": " + text);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("reason", Napi::String::New(env, text));
  const char* name = err > 0 ? strerrorname_np(err) : nullptr;
  if (name) e.Set("code", Napi::String::New(env, name));
  return e;
}

// Byte strings (paths, keys) arrive as Buffers so that no encoding is imposed on them.
std::string bytesArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsBuffer()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a Buffer");
  auto buf = info[i].As<Napi::Buffer<char>>();
  return std::string(buf.Data(), buf.Length());
}

// A byte string argument (one char per byte, as the JavaScript side carries Postfix's
// strings), read without a Buffer made for the call.
std::string byteStringArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
  size_t length = 0;
  napi_status status = napi_get_value_string_latin1(info.Env(), info[i], nullptr, 0, &length);
  NAPI_THROW_IF_FAILED(info.Env(), status, std::string());
  std::string bytes(length + 1, '\0');
  status = napi_get_value_string_latin1(info.Env(), info[i], &bytes[0], bytes.size(), &length);
  NAPI_THROW_IF_FAILED(info.Env(), status, std::string());
  bytes.resize(length);
  return bytes;
}

Napi::Value copyOut(Napi::Env env, const DBT& dbt) {
  return Napi::Buffer<char>::Copy(env, static_cast<const char*>(dbt.data), dbt.size);
}

// ------------------------------------------------------------------------ fault guard
// CatchingFaults() and InstallFaultHandler(): native/fault_guard.h (shared with patterns.cc).
using proxymap_native::CatchingFaults;
using proxymap_native::InstallFaultHandler;

// The size and mtime a read-only handle's file had when it was opened. A rename over the
// file keeps the open one intact, so its identity is not compared.
struct FileVersion {
  off_t size = 0;
  struct timespec mtime {};
  bool known = false;

  void Record(int fd) {
    struct stat st;
    known = fstat(fd, &st) == 0;
    if (known) {
      size = st.st_size;
      mtime = st.st_mtim;
    }
  }

  bool Still(int fd) const {
    struct stat st;
    if (!known || fstat(fd, &st) != 0) return false;
    return st.st_size == size && st.st_mtim.tv_sec == mtime.tv_sec && st.st_mtim.tv_nsec == mtime.tv_nsec;
  }
};

// A read-only file shorter than its own metadata says was truncated (or is being
// rewritten): opening it would answer from a part of the table.
Napi::Error truncatedError(Napi::Env env, uint64_t size, uint64_t needed, const std::string& what) {
  std::string text = "the file is truncated (" + std::to_string(size) + " bytes, its metadata needs " + std::to_string(needed) + ")";
  Napi::Error e = Napi::Error::New(env, what + ": " + text);
  e.Set("errno", Napi::Number::New(env, EIO));
  e.Set("reason", Napi::String::New(env, text));
  e.Set("code", Napi::String::New(env, "EIO"));
  return e;
}

// Berkeley DB's meta page (page 0): magic at 12, page size at 20, last page number at 32,
// in the byte order of the machine that made the file. 0 when the page cannot be read or
// is not a hash or btree meta page (then libdb's own checks decide).
uint64_t berkeleyDbNeededSize(int fd) {
  unsigned char meta[36];
  if (pread(fd, meta, sizeof meta, 0) != static_cast<ssize_t>(sizeof meta)) return 0;
  auto word = [&](size_t at, bool swapped) {
    uint32_t w;
    memcpy(&w, meta + at, sizeof w);
    return swapped ? __builtin_bswap32(w) : w;
  };
  for (bool swapped : {false, true}) {
    uint32_t magic = word(12, swapped);
    if (magic == DB_HASHMAGIC || magic == DB_BTREEMAGIC)
      return (static_cast<uint64_t>(word(32, swapped)) + 1) * word(20, swapped);
  }
  return 0;
}

// The error of a stale handle: `sig` the fault that made it stale, 0 when the file changed.
Napi::Error staleError(Napi::Env env, int sig, const std::string& what) {
  std::string text = sig != 0 ? std::string(strsignal(sig)) + " while reading the file (it was truncated or overwritten)"
                              : "the file was changed while it was open";
  Napi::Error e = Napi::Error::New(env, what + ": " + text);
  e.Set("errno", Napi::Number::New(env, ESTALE));
  e.Set("reason", Napi::String::New(env, text));
  e.Set("code", Napi::String::New(env, "ESTALE"));
  if (sig != 0) e.Set("signal", Napi::String::New(env, sig == SIGBUS ? "SIGBUS" : "SIGSEGV"));
  return e;
}

class Cursor;

// The file behind an open libdb or lmdb handle. After each read of a read-only handle the
// file must still be the one opened (one fstat() per read), else what was read is discarded
// and the handle is stale (a read of a file changed before it is caught by the check after
// it, and its faults by the guard). Read-write handles see their own writes change the
// file, and rely on the fault guard alone. A stale handle is not read again.
struct WatchedFile {
  int fd_ = -1;
  bool readOnly_ = false;
  bool stale_ = false;
  FileVersion version_;

  void CheckUnchanged(Napi::Env env, const char* what) {
    if (!stale_ && readOnly_ && !version_.Still(fd_)) stale_ = true;
    ThrowIfStale(env, what);
  }

  void ThrowIfStale(Napi::Env env, const char* what) {
    if (stale_) throw staleError(env, 0, what);
  }
};

class Db : public Napi::ObjectWrap<Db>, public WatchedFile {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Db", {
      InstanceMethod("get", &Db::Get),
      InstanceMethod("put", &Db::Put),
      InstanceMethod("del", &Db::Del),
      InstanceMethod("sync", &Db::Sync),
      InstanceMethod("fd", &Db::Fd),
      InstanceMethod("cursor", &Db::NewCursor),
      InstanceMethod("close", &Db::Close),
    });
  }

  explicit Db(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Db>(info) {}
  ~Db() override { CloseAll(); }

  // openDb(home, file, type, readOnly, create, cacheSize, hashNelem)
  void Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string home = bytesArg(info, 0);
    std::string file = bytesArg(info, 1);
    DBTYPE type = info[2].As<Napi::Number>().Int32Value() == 1 ? DB_HASH : DB_BTREE;
    bool readOnly = info[3].ToBoolean();
    bool create = info[4].ToBoolean();
    u_int32_t cacheSize = info[5].As<Napi::Number>().Uint32Value();
    u_int32_t hashNelem = info[6].As<Napi::Number>().Uint32Value();

    int ret = db_env_create(&env_, 0);
    if (ret != 0) throw errnoError(env, ret, "create DB environment");
    u_int32_t gbytes = 0, bytes = 0;
    int ncache = 0;
    if ((ret = env_->get_cachesize(env_, &gbytes, &bytes, &ncache)) != 0) Fail(env, ret, "get DB cache size");
    if (gbytes == 0 && bytes < cacheSize) {
      if ((ret = env_->set_cache_max(env_, gbytes, cacheSize)) != 0) Fail(env, ret, "set DB max cache size");
      if ((ret = env_->set_cachesize(env_, gbytes, cacheSize, ncache)) != 0) Fail(env, ret, "set DB cache size");
    }
    if ((ret = env_->open(env_, home.c_str(), DB_INIT_MPOOL | DB_CREATE | DB_PRIVATE, 0)) != 0)
      Fail(env, ret, "open DB environment");
    if ((ret = db_create(&db_, env_, 0)) != 0) Fail(env, ret, "create DB database");
    if (type == DB_HASH && hashNelem > 0 && (ret = db_->set_h_nelem(db_, hashNelem)) != 0)
      Fail(env, ret, "set DB hash element count");
    u_int32_t flags = DB_FCNTL_LOCKING | (readOnly ? DB_RDONLY : 0) | (create ? DB_CREATE : 0);
    InstallFaultHandler();
    int sig = CatchingFaults([&] { ret = db_->open(db_, nullptr, file.c_str(), nullptr, type, flags, 0644); });
    if (sig != 0) {
      Abandon();
      throw staleError(env, sig, "open database");
    }
    if (ret != 0) Fail(env, ret, "open database");
    opened_ = true;
    if ((ret = db_->fd(db_, &fd_)) != 0) Fail(env, ret, "get database file descriptor");
    readOnly_ = readOnly;
    if (readOnly_) {
      version_.Record(fd_);
      uint64_t needed = berkeleyDbNeededSize(fd_);
      if (version_.known && needed > static_cast<uint64_t>(version_.size)) {
        CloseAll();
        throw truncatedError(env, static_cast<uint64_t>(version_.size), needed, "open database");
      }
    }
  }

  void Forget(Cursor* c) { cursors_.erase(c); }
  void Adopt(Cursor* c) { cursors_.insert(c); }
  DB* handle() const { return db_; }

  // A fault inside libdb (a mapped page past the end of a truncated file, or garbage):
  // the operation was abandoned halfway, so the handles are closed and never used again.
  [[noreturn]] void Faulted(Napi::Env env, int sig, const char* what) {
    Abandon();
    throw staleError(env, sig, what);
  }

 private:
  DB_ENV* env_ = nullptr;
  DB* db_ = nullptr;
  bool opened_ = false;  // DB->sync() only after a successful DB->open()
  bool abandoned_ = false;
  std::set<Cursor*> cursors_;

  void Abandon();

  [[noreturn]] void Fail(Napi::Env env, int ret, const std::string& what) {
    CloseAll();
    throw errnoError(env, ret, what);
  }

  DB* Live(Napi::Env env) {
    if (abandoned_) throw staleError(env, 0, "database");
    if (!db_) throw Napi::Error::New(env, "database is closed");
    return db_;
  }

  int CloseAll();

  Napi::Value Get(const Napi::CallbackInfo& info) {
    DB* db = Live(info.Env());
    std::string key = bytesArg(info, 0);
    DBT k{}, v{};
    k.data = key.data();
    k.size = key.size();
    ThrowIfStale(info.Env(), "get");
    int ret = 0;
    int sig = CatchingFaults([&] { ret = db->get(db, nullptr, &k, &v, 0); });
    if (sig != 0) Faulted(info.Env(), sig, "get");
    CheckUnchanged(info.Env(), "get");
    if (ret == DB_NOTFOUND) return info.Env().Undefined();
    if (ret == DB_KEYEMPTY) ret = EINVAL;
    if (ret != 0) throw errnoError(info.Env(), ret, "get");
    return copyOut(info.Env(), v);
  }

  // put(key, value, noOverwrite): false when noOverwrite and the key exists.
  Napi::Value Put(const Napi::CallbackInfo& info) {
    DB* db = Live(info.Env());
    std::string key = bytesArg(info, 0);
    std::string value = bytesArg(info, 1);
    DBT k{}, v{};
    k.data = key.data();
    k.size = key.size();
    v.data = value.data();
    v.size = value.size();
    int ret = 0;
    int sig = CatchingFaults([&] { ret = db->put(db, nullptr, &k, &v, info[2].ToBoolean() ? DB_NOOVERWRITE : 0); });
    if (sig != 0) Faulted(info.Env(), sig, "put");
    if (ret == DB_KEYEXIST) return Napi::Boolean::New(info.Env(), false);
    if (ret != 0) throw errnoError(info.Env(), ret, "put");
    return Napi::Boolean::New(info.Env(), true);
  }

  // del(key): false when the key was not there.
  Napi::Value Del(const Napi::CallbackInfo& info) {
    DB* db = Live(info.Env());
    std::string key = bytesArg(info, 0);
    DBT k{};
    k.data = key.data();
    k.size = key.size();
    int ret = 0;
    int sig = CatchingFaults([&] { ret = db->del(db, nullptr, &k, 0); });
    if (sig != 0) Faulted(info.Env(), sig, "del");
    if (ret == DB_NOTFOUND) return Napi::Boolean::New(info.Env(), false);
    if (ret == DB_KEYEMPTY) ret = EINVAL;
    if (ret != 0) throw errnoError(info.Env(), ret, "del");
    return Napi::Boolean::New(info.Env(), true);
  }

  Napi::Value Sync(const Napi::CallbackInfo& info) {
    DB* db = Live(info.Env());
    int ret = db->sync(db, 0);
    if (ret != 0) throw errnoError(info.Env(), ret, "sync");
    return info.Env().Undefined();
  }

  Napi::Value Fd(const Napi::CallbackInfo& info) {
    Live(info.Env());
    return Napi::Number::New(info.Env(), fd_);
  }

  Napi::Value NewCursor(const Napi::CallbackInfo& info);

  // close(): closes cursors, syncs and closes; the sync/close status is returned as an
  // errno number (0: fine) because Postfix only reports a failing close.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), CloseAll());
  }
};

Napi::FunctionReference* Db::constructor = nullptr;

class Cursor : public Napi::ObjectWrap<Cursor> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Cursor", {
      InstanceMethod("get", &Cursor::Get),
      InstanceMethod("close", &Cursor::CloseMethod),
    });
  }

  explicit Cursor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Cursor>(info) {}
  ~Cursor() override { Close(); }

  void Attach(Napi::Env env, Db* owner, Napi::Object ownerObject) {
    DB* db = owner->handle();
    int ret = db->cursor(db, nullptr, &dbc_, 0);
    if (ret != 0) throw errnoError(env, ret, "create cursor");
    owner_ = owner;
    ownerRef_ = Napi::Persistent(ownerObject);  // the Db outlives its cursors
    owner->Adopt(this);
  }

  // Called by the Db when it closes first, or abandons its handles.
  void Detach() {
    if (dbc_) CatchingFaults([&] { dbc_->close(dbc_); });
    dbc_ = nullptr;
    owner_ = nullptr;
  }

 private:
  DBC* dbc_ = nullptr;
  Db* owner_ = nullptr;
  Napi::ObjectReference ownerRef_;

  void Close() {
    if (owner_) owner_->Forget(this);
    if (dbc_) dbc_->close(dbc_);
    dbc_ = nullptr;
    owner_ = nullptr;
    if (!ownerRef_.IsEmpty()) ownerRef_.Reset();
  }

  // get(first): [key, value] at DB_FIRST or DB_NEXT, or undefined at the end.
  Napi::Value Get(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!dbc_) throw Napi::Error::New(env, "cursor is closed");
    DBT k{}, v{};
    owner_->ThrowIfStale(env, "cursor get");
    int ret = 0;
    int sig = CatchingFaults([&] { ret = dbc_->get(dbc_, &k, &v, info[0].ToBoolean() ? DB_FIRST : DB_NEXT); });
    if (sig != 0) owner_->Faulted(env, sig, "cursor get");
    owner_->CheckUnchanged(env, "cursor get");
    if (ret == DB_NOTFOUND) return env.Undefined();
    if (ret != 0) throw errnoError(env, ret, "cursor get");
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, copyOut(env, k));
    pair.Set(1u, copyOut(env, v));
    return pair;
  }

  Napi::Value CloseMethod(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }
};

Napi::FunctionReference* Cursor::constructor = nullptr;

void Db::Abandon() {
  abandoned_ = true;
  stale_ = true;
  for (Cursor* c : std::set<Cursor*>(cursors_)) c->Detach();
  cursors_.clear();
  // A private environment without DB_THREAD has no mutexes, so closing cannot wait on one
  // the fault left held; whatever else the abandoned operation left half done, closing
  // (without a sync: the handle only read) runs guarded, and a fault there leaves it all.
  DB* db = db_;
  DB_ENV* dbEnv = env_;
  CatchingFaults([&] {
    if (db) db->close(db, DB_NOSYNC);
    db = nullptr;
    if (dbEnv) dbEnv->close(dbEnv, 0);
  });
  db_ = nullptr;
  env_ = nullptr;
  opened_ = false;
  fd_ = -1;
}

int Db::CloseAll() {
  for (Cursor* c : std::set<Cursor*>(cursors_)) c->Detach();
  cursors_.clear();
  int status = 0;
  if (db_) {
    if (opened_) status = db_->sync(db_, 0);
    int ret = db_->close(db_, 0);
    if (status == 0) status = ret;
    db_ = nullptr;
    opened_ = false;
  }
  if (env_) {
    env_->close(env_, 0);
    env_ = nullptr;
  }
  fd_ = -1;
  return status;
}

Napi::Value Db::NewCursor(const Napi::CallbackInfo& info) {
  Live(info.Env());
  Napi::Object obj = Cursor::constructor->New({});
  Cursor::Unwrap(obj)->Attach(info.Env(), this, Value());
  return obj;
}

Napi::Value OpenDb(const Napi::CallbackInfo& info) {
  Napi::Object obj = Db::constructor->New({});
  Db::Unwrap(obj)->Open(info);
  return obj;
}

// ------------------------------------------------------------------------ LMDB (liblmdb)

// An LMDB status as an exception: mdb_strerror() covers both errno values (> 0) and
// LMDB's own codes (< 0, such as MDB_MAP_FULL), which callers compare by `errno`.
Napi::Error mdbError(Napi::Env env, int err, const std::string& what) {
  const char* text = mdb_strerror(err);
  Napi::Error e = Napi::Error::New(env, what + ": " + text);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("reason", Napi::String::New(env, text));
  const char* name = err > 0 ? strerrorname_np(err) : nullptr;
  if (name) e.Set("code", Napi::String::New(env, name));
  return e;
}

MDB_val valOf(std::string& bytes) {
  MDB_val v;
  v.mv_size = bytes.size();
  v.mv_data = bytes.data();
  return v;
}

class LmdbTxn;

class LmdbEnv : public Napi::ObjectWrap<LmdbEnv>, public WatchedFile {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "LmdbEnv", {
      InstanceMethod("begin", &LmdbEnv::Begin),
      InstanceMethod("lookup", &LmdbEnv::Lookup),
      InstanceMethod("setMapSize", &LmdbEnv::SetMapSize),
      InstanceMethod("mapSize", &LmdbEnv::MapSize),
      InstanceMethod("maxKeySize", &LmdbEnv::MaxKeySize),
      InstanceMethod("fd", &LmdbEnv::Fd),
      InstanceMethod("sync", &LmdbEnv::Sync),
      InstanceMethod("seek", &LmdbEnv::Seek),
      InstanceMethod("seekBatch", &LmdbEnv::SeekBatch),
      InstanceMethod("lastTxnId", &LmdbEnv::LastTxnId),
      InstanceMethod("releaseMap", &LmdbEnv::ReleaseMap),
      InstanceMethod("close", &LmdbEnv::CloseMethod),
    });
  }

  explicit LmdbEnv(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LmdbEnv>(info) {}
  ~LmdbEnv() override { CloseAll(); }

  // lmdbOpen(path, readOnly, mapSize): MDB_NOSUBDIR|MDB_NOLOCK (+MDB_RDONLY), mode 0644,
  // and the handle of the unnamed database.
  void Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string path = bytesArg(info, 0);
    bool readOnly = info[1].ToBoolean();
    size_t mapSize = static_cast<size_t>(info[2].As<Napi::Number>().DoubleValue());
    int ret = mdb_env_create(&env_);
    if (ret != 0) {
      env_ = nullptr;
      throw mdbError(env, ret, "mdb_env_create");
    }
    unsigned int flags = MDB_NOSUBDIR | MDB_NOLOCK | (readOnly ? MDB_RDONLY : 0);
    MDB_txn* txn = nullptr;
    readOnly_ = readOnly;
    InstallFaultHandler();
    if ((ret = mdb_env_set_mapsize(env_, mapSize)) != 0 || (ret = mdb_env_open(env_, path.c_str(), flags, 0644)) != 0) {
      CloseAll();
      throw mdbError(env, ret, "mdb_env_open");
    }
    mdb_filehandle_t fd;
    if (mdb_env_get_fd(env_, &fd) == 0) {
      fd_ = fd;
      if (readOnly_) version_.Record(fd_);
    }
    MDB_envinfo info_{};
    MDB_stat stat_{};
    int sig = CatchingFaults([&] {
      if ((ret = mdb_env_info(env_, &info_)) != 0 || (ret = mdb_env_stat(env_, &stat_)) != 0) return;
      if ((ret = mdb_txn_begin(env_, nullptr, readOnly ? MDB_RDONLY : 0, &txn)) == 0 &&
          (ret = mdb_dbi_open(txn, nullptr, 0, &dbi_)) == 0) {
        ret = mdb_txn_commit(txn);
        txn = nullptr;
      }
    });
    if (sig != 0 || ret != 0) {
      if (txn) mdb_txn_abort(txn);
      CloseAll();
      if (sig != 0) throw staleError(env, sig, "mdb_env_open");
      throw mdbError(env, ret, "mdb_env_open");
    }
    uint64_t needed = (static_cast<uint64_t>(info_.me_last_pgno) + 1) * stat_.ms_psize;
    if (readOnly_ && version_.known && needed > static_cast<uint64_t>(version_.size)) {
      CloseAll();
      throw truncatedError(env, static_cast<uint64_t>(version_.size), needed, "mdb_env_open");
    }
  }

  MDB_env* Live(Napi::Env env) {
    if (!env_) throw Napi::Error::New(env, "LMDB environment is closed");
    return env_;
  }
  MDB_dbi dbi() const { return dbi_; }
  void Forget(LmdbTxn* t) { txns_.erase(t); }
  void Adopt(LmdbTxn* t) { txns_.insert(t); }

  [[noreturn]] void Faulted(Napi::Env env, int sig, const char* what) {
    stale_ = true;
    throw staleError(env, sig, what);
  }

  // A value LMDB found must lie inside the file as it was opened; garbage pages can claim
  // any size.
  bool Plausible(const MDB_val& v) const {
    return !readOnly_ || !version_.known || static_cast<uint64_t>(v.mv_size) <= static_cast<uint64_t>(version_.size);
  }

  // A Buffer holding a copy of mapped bytes: copying may fault too.
  Napi::Value CopyOutGuarded(Napi::Env env, const MDB_val& v, const char* what) {
    if (!Plausible(v)) {
      stale_ = true;
      throw mdbError(env, MDB_CORRUPTED, what);
    }
    Napi::Buffer<char> copy = Napi::Buffer<char>::New(env, v.mv_size);
    char* to = copy.Data();
    int sig = CatchingFaults([&] { memcpy(to, v.mv_data, v.mv_size); });
    if (sig != 0) Faulted(env, sig, what);
    return copy;
  }

 private:
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  std::set<LmdbTxn*> txns_;

  void CloseAll();

  Napi::Value Begin(const Napi::CallbackInfo& info);

  // setMapSize(size): mdb_env_set_mapsize(); 0 adopts the size recorded in the file.
  Napi::Value SetMapSize(const Napi::CallbackInfo& info) {
    MDB_env* e = Live(info.Env());
    int ret = mdb_env_set_mapsize(e, static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue()));
    if (ret != 0) throw mdbError(info.Env(), ret, "mdb_env_set_mapsize");
    return info.Env().Undefined();
  }

  Napi::Value MapSize(const Napi::CallbackInfo& info) {
    MDB_envinfo ei;
    int ret = mdb_env_info(Live(info.Env()), &ei);
    if (ret != 0) throw mdbError(info.Env(), ret, "mdb_env_info");
    return Napi::Number::New(info.Env(), static_cast<double>(ei.me_mapsize));
  }

  Napi::Value MaxKeySize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), mdb_env_get_maxkeysize(Live(info.Env())));
  }

  Napi::Value Fd(const Napi::CallbackInfo& info) {
    mdb_filehandle_t fd;
    int ret = mdb_env_get_fd(Live(info.Env()), &fd);
    if (ret != 0) throw mdbError(info.Env(), ret, "mdb_env_get_fd");
    return Napi::Number::New(info.Env(), fd);
  }

  Napi::Value Sync(const Napi::CallbackInfo& info) {
    int ret = mdb_env_sync(Live(info.Env()), 1);
    if (ret != 0) throw mdbError(info.Env(), ret, "mdb_env_sync");
    return info.Env().Undefined();
  }

  // seek(after): in one read-only transaction, the first entry (no `after`), or the first
  // entry whose key sorts after the Buffer `after`: [key, value], or undefined at the end.
  // One call per step of a sequence, so that a long listing makes no garbage but the
  // returned pair.
  Napi::Value Seek(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MDB_env* e = Live(env);
    bool first = info.Length() < 1 || info[0].IsUndefined();
    std::string after;
    if (!first) after = bytesArg(info, 0);
    ThrowIfStale(env, "mdb_txn_begin");
    MDB_txn* txn = nullptr;
    MDB_cursor* cursor = nullptr;
    int ret = 0;
    const char* step = "mdb_txn_begin";
    MDB_val k = valOf(after), v{};
    int sig = CatchingFaults([&] {
      if ((ret = mdb_txn_begin(e, nullptr, MDB_RDONLY, &txn)) != 0) return;
      step = "mdb_cursor_open";
      if ((ret = mdb_cursor_open(txn, dbi_, &cursor)) != 0) return;
      step = "mdb_cursor_get";
      if (first) {
        ret = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
      } else {
        ret = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
        if (ret == 0 && k.mv_size == after.size() && memcmp(k.mv_data, after.data(), after.size()) == 0)
          ret = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
      }
    });
    struct Ending {  // the transaction ends however this returns
      MDB_txn*& txn;
      MDB_cursor*& cursor;
      ~Ending() {
        if (cursor) mdb_cursor_close(cursor);
        if (txn) mdb_txn_abort(txn);
      }
    } ending{txn, cursor};
    if (sig != 0) Faulted(env, sig, step);
    if (ret != 0 && ret != MDB_NOTFOUND) {
      CheckUnchanged(env, step);
      throw mdbError(env, ret, step);
    }
    if (ret != 0) {
      CheckUnchanged(env, step);
      return env.Undefined();
    }
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, CopyOutGuarded(env, k, step));
    pair.Set(1u, CopyOutGuarded(env, v, step));
    CheckUnchanged(env, step);
    return pair;
  }

  // lookup(key): mdb_get() of the byte string `key` in a read-only transaction begun and
  // ended within the call (a lookup makes no transaction object for the garbage collector
  // to finalize): the value as Postfix reads it, a C string (up to its first NUL) of one
  // char per byte, or undefined (MDB_NOTFOUND).
  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MDB_env* e = Live(env);
    std::string key = byteStringArg(info, 0);
    ThrowIfStale(env, "mdb_txn_begin");
    MDB_txn* txn = nullptr;
    int ret = 0;
    const char* step = "mdb_txn_begin";
    MDB_val k = valOf(key), v{};
    int sig = CatchingFaults([&] {
      if ((ret = mdb_txn_begin(e, nullptr, MDB_RDONLY, &txn)) != 0) return;
      step = "mdb_get";
      ret = mdb_get(txn, dbi_, &k, &v);
    });
    struct Ending {  // the value is copied out before the transaction ends
      MDB_txn*& txn;
      ~Ending() {
        if (txn) mdb_txn_abort(txn);
      }
    } ending{txn};
    if (sig != 0) Faulted(env, sig, step);
    if (ret != 0) {
      CheckUnchanged(env, step);  // the error of a changed file is its change
      if (ret == MDB_NOTFOUND) return env.Undefined();
      throw mdbError(env, ret, step);
    }
    if (!Plausible(v)) {
      stale_ = true;
      throw mdbError(env, MDB_CORRUPTED, step);
    }
    std::string copy(v.mv_size, '\0');  // allocated before the guard, which must not allocate
    char* to = &copy[0];
    sig = CatchingFaults([&] { memcpy(to, v.mv_data, v.mv_size); });
    if (sig != 0) Faulted(env, sig, step);
    CheckUnchanged(env, step);
    napi_value text;
    napi_status status = napi_create_string_latin1(env, copy.data(), strnlen(copy.data(), copy.size()), &text);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
    return Napi::Value(env, text);
  }

  // lastTxnId(): the id of the last committed transaction as the file's meta pages say
  // (any process's commit changes it), or -1 when they cannot be read.
  Napi::Value LastTxnId(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MDB_env* e = Live(env);
    MDB_envinfo ei{};
    int ret = 0;
    int sig = CatchingFaults([&] { ret = mdb_env_info(e, &ei); });
    if (sig != 0 || ret != 0) return Napi::Number::New(env, -1);
    return Napi::Number::New(env, static_cast<double>(ei.me_last_txnid));
  }

  // seekBatch(after, maxEntries, maxBytes): like seek(), but up to maxEntries consecutive
  // entries from one read-only transaction, packed in one Buffer as [u32 key length][key]
  // [u32 value length][value]... (lengths little-endian); undefined at the end. It stops early
  // once maxBytes are packed (always at least one entry). A listing then costs one call,
  // one transaction and one allocation per batch instead of per entry.
  Napi::Value SeekBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MDB_env* e = Live(env);
    bool first = info[0].IsUndefined();
    std::string after;
    if (!first) after = bytesArg(info, 0);
    uint32_t maxEntries = info[1].As<Napi::Number>().Uint32Value();
    size_t maxBytes = static_cast<size_t>(info[2].As<Napi::Number>().DoubleValue());
    if (maxEntries == 0) throw Napi::RangeError::New(env, "maxEntries must be at least 1");
    // Filled inside the fault guard, which must not allocate: sized beforehand.
    std::vector<MDB_val> found(2 * static_cast<size_t>(maxEntries));
    CheckUnchanged(env, "mdb_txn_begin");
    MDB_txn* txn = nullptr;
    MDB_cursor* cursor = nullptr;
    int ret = 0;
    const char* step = "mdb_txn_begin";
    size_t count = 0, packed = 0;
    MDB_val k = valOf(after), v{};
    MDB_val* slots = found.data();
    int sig = CatchingFaults([&] {
      if ((ret = mdb_txn_begin(e, nullptr, MDB_RDONLY, &txn)) != 0) return;
      step = "mdb_cursor_open";
      if ((ret = mdb_cursor_open(txn, dbi_, &cursor)) != 0) return;
      step = "mdb_cursor_get";
      if (first) {
        ret = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
      } else {
        ret = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
        if (ret == 0 && k.mv_size == after.size() && memcmp(k.mv_data, after.data(), after.size()) == 0)
          ret = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
      }
      while (ret == 0) {
        slots[2 * count] = k;
        slots[2 * count + 1] = v;
        count++;
        packed += 8 + k.mv_size + v.mv_size;
        if (count == maxEntries || packed >= maxBytes) break;
        ret = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
      }
    });
    struct Ending {  // the transaction ends however this returns
      MDB_txn*& txn;
      MDB_cursor*& cursor;
      ~Ending() {
        if (cursor) mdb_cursor_close(cursor);
        if (txn) mdb_txn_abort(txn);
      }
    } ending{txn, cursor};
    if (sig != 0) Faulted(env, sig, step);
    if (ret != 0 && ret != MDB_NOTFOUND) throw mdbError(env, ret, step);
    if (count == 0) {
      CheckUnchanged(env, step);
      return env.Undefined();
    }
    for (size_t i = 0; i < 2 * count; i++) {
      if (!Plausible(slots[i]) || slots[i].mv_size > UINT32_MAX) {
        stale_ = true;
        throw mdbError(env, MDB_CORRUPTED, step);
      }
    }
    Napi::Buffer<char> batch = Napi::Buffer<char>::New(env, packed);
    char* to = batch.Data();
    sig = CatchingFaults([&] {
      for (size_t i = 0; i < 2 * count; i++) {
        uint32_t size = static_cast<uint32_t>(slots[i].mv_size);
        for (int b = 0; b < 4; b++) to[b] = static_cast<char>((size >> (8 * b)) & 0xff);  // little-endian
        memcpy(to + 4, slots[i].mv_data, size);
        to += 4 + size;
      }
    });
    if (sig != 0) Faulted(env, sig, step);
    CheckUnchanged(env, step);
    return batch;
  }

  // releaseMap(): drop the mapped file pages from this process's resident set
  // (madvise(MADV_DONTNEED) over the map; they stay in the page cache and come back from
  // the file when touched). Only between transactions, and LMDB never writes through the
  // map here (no MDB_WRITEMAP). LMDB does not tell where its map is (mdb_env_info() gives
  // an address only for MDB_FIXEDMAP), so it is found in /proc/self/maps as the mapping
  // that holds the first key of the database. False when nothing was done.
  Napi::Value ReleaseMap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MDB_env* e = Live(env);
    if (!txns_.empty() || stale_) return Napi::Boolean::New(env, false);
    MDB_txn* txn = nullptr;
    MDB_cursor* cursor = nullptr;
    MDB_val k{}, v{};
    int ret = 0;
    int sig = CatchingFaults([&] {
      if ((ret = mdb_txn_begin(e, nullptr, MDB_RDONLY, &txn)) != 0) return;
      if ((ret = mdb_cursor_open(txn, dbi_, &cursor)) == 0) ret = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
    });
    if (cursor) mdb_cursor_close(cursor);
    if (txn) mdb_txn_abort(txn);
    if (sig != 0) stale_ = true;
    if (sig != 0 || ret != 0) return Napi::Boolean::New(env, false);
    uintptr_t inside = reinterpret_cast<uintptr_t>(k.mv_data);
    FILE* maps = fopen("/proc/self/maps", "re");
    if (!maps) return Napi::Boolean::New(env, false);
    bool done = false;
    unsigned long start, end;
    char line[512];
    while (!done && fgets(line, sizeof line, maps)) {
      if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start <= inside && inside < end)
        done = madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED) == 0;
    }
    fclose(maps);
    return Napi::Boolean::New(env, done);
  }

  Napi::Value CloseMethod(const Napi::CallbackInfo& info) {
    CloseAll();
    return info.Env().Undefined();
  }
};

Napi::FunctionReference* LmdbEnv::constructor = nullptr;

// One transaction, with at most one cursor (opened by the first cursorGet, closed with
// the transaction). It ends with commit() or abort(), or when its environment closes.
class LmdbTxn : public Napi::ObjectWrap<LmdbTxn> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "LmdbTxn", {
      InstanceMethod("put", &LmdbTxn::Put),
      InstanceMethod("del", &LmdbTxn::Del),
      InstanceMethod("cursorGet", &LmdbTxn::CursorGet),
      InstanceMethod("commit", &LmdbTxn::Commit),
      InstanceMethod("abort", &LmdbTxn::AbortMethod),
    });
  }

  explicit LmdbTxn(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LmdbTxn>(info) {}
  ~LmdbTxn() override { Abort(); }

  void Attach(Napi::Env env, LmdbEnv* owner, Napi::Object ownerObject, bool readOnly) {
    MDB_env* e = owner->Live(env);
    owner->ThrowIfStale(env, "mdb_txn_begin");
    int ret = 0;
    MDB_txn* txn = nullptr;
    int sig = CatchingFaults([&] { ret = mdb_txn_begin(e, nullptr, readOnly ? MDB_RDONLY : 0, &txn); });
    if (sig != 0) {
      if (txn) mdb_txn_abort(txn);
      owner->Faulted(env, sig, "mdb_txn_begin");
    }
    if (ret != 0) {
      owner->CheckUnchanged(env, "mdb_txn_begin");
      throw mdbError(env, ret, "mdb_txn_begin");
    }
    txn_ = txn;
    dbi_ = owner->dbi();
    owner_ = owner;
    ownerRef_ = Napi::Persistent(ownerObject);  // the environment outlives its transactions
    owner->Adopt(this);
  }

  // Called by the environment when it closes first, and by Abort().
  void Detach() {
    if (cursor_) mdb_cursor_close(cursor_);
    cursor_ = nullptr;
    if (txn_) mdb_txn_abort(txn_);
    txn_ = nullptr;
    owner_ = nullptr;
  }

 private:
  MDB_txn* txn_ = nullptr;
  MDB_cursor* cursor_ = nullptr;
  MDB_dbi dbi_ = 0;
  LmdbEnv* owner_ = nullptr;
  Napi::ObjectReference ownerRef_;

  MDB_txn* Live(Napi::Env env) {
    if (!txn_) throw Napi::Error::New(env, "LMDB transaction has ended");
    return txn_;
  }

  void Release() {
    if (owner_) owner_->Forget(this);
    owner_ = nullptr;
    if (!ownerRef_.IsEmpty()) ownerRef_.Reset();
  }

  void Abort() {
    LmdbEnv* owner = owner_;
    Detach();
    owner_ = owner;
    Release();
  }

  // put(key, value, noOverwrite): false when noOverwrite and the key exists (MDB_KEYEXIST).
  Napi::Value Put(const Napi::CallbackInfo& info) {
    MDB_txn* txn = Live(info.Env());
    std::string key = bytesArg(info, 0);
    std::string value = bytesArg(info, 1);
    MDB_val k = valOf(key), v = valOf(value);
    int ret = 0;
    int sig = CatchingFaults([&] { ret = mdb_put(txn, dbi_, &k, &v, info[2].ToBoolean() ? MDB_NOOVERWRITE : 0); });
    if (sig != 0) owner_->Faulted(info.Env(), sig, "mdb_put");
    if (ret == MDB_KEYEXIST) return Napi::Boolean::New(info.Env(), false);
    if (ret != 0) throw mdbError(info.Env(), ret, "mdb_put");
    return Napi::Boolean::New(info.Env(), true);
  }

  // del(key): false when the key was not there (MDB_NOTFOUND).
  Napi::Value Del(const Napi::CallbackInfo& info) {
    MDB_txn* txn = Live(info.Env());
    std::string key = bytesArg(info, 0);
    MDB_val k = valOf(key);
    int ret = 0;
    int sig = CatchingFaults([&] { ret = mdb_del(txn, dbi_, &k, nullptr); });
    if (sig != 0) owner_->Faulted(info.Env(), sig, "mdb_del");
    if (ret == MDB_NOTFOUND) return Napi::Boolean::New(info.Env(), false);
    if (ret != 0) throw mdbError(info.Env(), ret, "mdb_del");
    return Napi::Boolean::New(info.Env(), true);
  }

  // cursorGet(op, key): mdb_cursor_get() with op MDB_FIRST, MDB_NEXT or MDB_SET_RANGE (key
  // a Buffer for MDB_SET_RANGE): [key, value], or undefined (MDB_NOTFOUND).
  Napi::Value CursorGet(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MDB_txn* txn = Live(env);
    int op = info[0].As<Napi::Number>().Int32Value();
    if (op != MDB_FIRST && op != MDB_NEXT && op != MDB_SET_RANGE) throw Napi::RangeError::New(env, "unsupported cursor operation");
    std::string key;
    if (op == MDB_SET_RANGE) key = bytesArg(info, 1);
    int ret;
    if (!cursor_ && (ret = mdb_cursor_open(txn, dbi_, &cursor_)) != 0) {
      cursor_ = nullptr;
      throw mdbError(env, ret, "mdb_cursor_open");
    }
    MDB_val k = valOf(key), v{};
    MDB_cursor* cursor = cursor_;
    int sig = CatchingFaults([&] { ret = mdb_cursor_get(cursor, &k, &v, static_cast<MDB_cursor_op>(op)); });
    if (sig != 0) owner_->Faulted(env, sig, "mdb_cursor_get");
    if (ret == MDB_NOTFOUND) {
      owner_->CheckUnchanged(env, "mdb_cursor_get");
      return env.Undefined();
    }
    if (ret != 0) {
      owner_->CheckUnchanged(env, "mdb_cursor_get");
      throw mdbError(env, ret, "mdb_cursor_get");
    }
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, owner_->CopyOutGuarded(env, k, "mdb_cursor_get"));
    pair.Set(1u, owner_->CopyOutGuarded(env, v, "mdb_cursor_get"));
    owner_->CheckUnchanged(env, "mdb_cursor_get");
    return pair;
  }

  // commit(): the transaction has ended whatever the outcome.
  Napi::Value Commit(const Napi::CallbackInfo& info) {
    MDB_txn* txn = Live(info.Env());
    if (cursor_) mdb_cursor_close(cursor_);
    cursor_ = nullptr;
    txn_ = nullptr;
    LmdbEnv* owner = owner_;
    Release();
    int ret = 0;
    int sig = CatchingFaults([&] { ret = mdb_txn_commit(txn); });
    if (sig != 0) owner->Faulted(info.Env(), sig, "mdb_txn_commit");
    if (ret != 0) throw mdbError(info.Env(), ret, "mdb_txn_commit");
    return info.Env().Undefined();
  }

  // abort(): harmless when the transaction has already ended.
  Napi::Value AbortMethod(const Napi::CallbackInfo& info) {
    Abort();
    return info.Env().Undefined();
  }
};

Napi::FunctionReference* LmdbTxn::constructor = nullptr;

void LmdbEnv::CloseAll() {
  for (LmdbTxn* t : std::set<LmdbTxn*>(txns_)) t->Detach();
  txns_.clear();
  if (env_) mdb_env_close(env_);
  env_ = nullptr;
}

Napi::Value LmdbEnv::Begin(const Napi::CallbackInfo& info) {
  Live(info.Env());
  Napi::Object obj = LmdbTxn::constructor->New({});
  LmdbTxn::Unwrap(obj)->Attach(info.Env(), this, Value(), info[0].ToBoolean());
  return obj;
}

Napi::Value LmdbOpen(const Napi::CallbackInfo& info) {
  Napi::Object obj = LmdbEnv::constructor->New({});
  LmdbEnv::Unwrap(obj)->Open(info);
  return obj;
}

// flock(fd, op): true when done; false when op has LOCK_NB and the lock is held elsewhere.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = info[1].As<Napi::Number>().Int32Value();
  int ret;
  while ((ret = flock(fd, op)) < 0 && errno == EINTR) {
  }
  if (ret < 0) {
    if ((op & LOCK_NB) && errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    throw errnoError(info.Env(), errno, "flock");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// fcntlLock(fd, type, wait): whole-file F_SETLK (wait false) or F_SETLKW (wait true) with
// l_type F_RDLCK/F_WRLCK/F_UNLCK; false when not waiting and the lock is held elsewhere.
Napi::Value FcntlLock(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct flock lock {};
  lock.l_type = static_cast<short>(info[1].As<Napi::Number>().Int32Value());
  lock.l_whence = SEEK_SET;
  bool wait = info[2].ToBoolean();
  int ret;
  while ((ret = fcntl(fd, wait ? F_SETLKW : F_SETLK, &lock)) < 0 && errno == EINTR) {
  }
  if (ret < 0) {
    if (!wait && (errno == EAGAIN || errno == EACCES)) return Napi::Boolean::New(info.Env(), false);
    throw errnoError(info.Env(), errno, "fcntl");
  }
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value Chroot(const Napi::CallbackInfo& info) {
  std::string path = bytesArg(info, 0);
  if (chroot(path.c_str()) < 0) throw errnoError(info.Env(), errno, "chroot " + path);
  return info.Env().Undefined();
}

// exchangeFiles(a, b): renameat2(RENAME_EXCHANGE), both names swapped in one step, so that
// neither is ever missing or names a half-written file.
Napi::Value ExchangeFiles(const Napi::CallbackInfo& info) {
  std::string a = bytesArg(info, 0);
  std::string b = bytesArg(info, 1);
  if (renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) < 0)
    throw errnoError(info.Env(), errno, "rename " + a + " " + b);
  return info.Env().Undefined();
}

Napi::Value Setsid(const Napi::CallbackInfo& info) {
  pid_t sid = setsid();
  if (sid < 0) throw errnoError(info.Env(), errno, "setsid");
  return Napi::Number::New(info.Env(), sid);
}

Napi::Value DgramConnect(const Napi::CallbackInfo& info) {
  std::string path = bytesArg(info, 0);
  struct sockaddr_un sun;
  if (path.size() >= sizeof(sun.sun_path)) throw errnoError(info.Env(), ENAMETOOLONG, "connect " + path);
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, path.data(), path.size());
  // A name in the abstract namespace (leading NUL, as systemd's "@..." NOTIFY_SOCKET) is
  // exactly its bytes long: the padding would be part of the name.
  socklen_t len = path.size() > 0 && path[0] == '\0'
    ? static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size()) : sizeof(sun);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errnoError(info.Env(), errno, "socket");
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&sun), len) < 0) {
    int err = errno;
    close(fd);
    throw errnoError(info.Env(), err, "connect " + path);
  }
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value DgramSend(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string bytes = bytesArg(info, 1);
  ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT);
  if (n < 0) throw errnoError(info.Env(), errno, "send");
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

// After a burst of clients has gone, the memory they used goes back to the kernel: V8 keeps
// its grown heap and glibc its freed pages otherwise, and a server that once held many
// connections would stay that big. LowMemoryNotification() is V8's collect-and-shrink (not
// reachable from JavaScript); it runs on the main thread, between requests.
Napi::Value ReleaseMemory(const Napi::CallbackInfo& info) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->LowMemoryNotification();
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Db::constructor = new Napi::FunctionReference(Napi::Persistent(Db::Init(env)));
  Cursor::constructor = new Napi::FunctionReference(Napi::Persistent(Cursor::Init(env)));
  LmdbEnv::constructor = new Napi::FunctionReference(Napi::Persistent(LmdbEnv::Init(env)));
  LmdbTxn::constructor = new Napi::FunctionReference(Napi::Persistent(LmdbTxn::Init(env)));
  exports.Set("openDb", Napi::Function::New(env, OpenDb));
  exports.Set("lmdbOpen", Napi::Function::New(env, LmdbOpen));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("fcntlLock", Napi::Function::New(env, FcntlLock));
  exports.Set("chroot", Napi::Function::New(env, Chroot));
  exports.Set("exchangeFiles", Napi::Function::New(env, ExchangeFiles));
  exports.Set("setsid", Napi::Function::New(env, Setsid));
  exports.Set("dgramConnect", Napi::Function::New(env, DgramConnect));
  exports.Set("dgramSend", Napi::Function::New(env, DgramSend));
  exports.Set("releaseMemory", Napi::Function::New(env, ReleaseMemory));

  int major = 0, minor = 0, patch = 0;
  db_version(&major, &minor, &patch);
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("LOCK_SH", LOCK_SH);
  constants.Set("LOCK_EX", LOCK_EX);
  constants.Set("LOCK_UN", LOCK_UN);
  constants.Set("LOCK_NB", LOCK_NB);
  constants.Set("F_RDLCK", F_RDLCK);
  constants.Set("F_WRLCK", F_WRLCK);
  constants.Set("F_UNLCK", F_UNLCK);
  constants.Set("DB_HASH", 1);
  constants.Set("DB_BTREE", 2);
  constants.Set("MDB_FIRST", static_cast<int>(MDB_FIRST));
  constants.Set("MDB_NEXT", static_cast<int>(MDB_NEXT));
  constants.Set("MDB_SET_RANGE", static_cast<int>(MDB_SET_RANGE));
  constants.Set("MDB_MAP_FULL", MDB_MAP_FULL);
  constants.Set("MDB_MAP_RESIZED", MDB_MAP_RESIZED);
  constants.Set("MDB_READERS_FULL", MDB_READERS_FULL);
  constants.Set("MDB_BAD_VALSIZE", MDB_BAD_VALSIZE);
  constants.Set("ESTALE", ESTALE);
  exports.Set("constants", constants);
  Napi::Object version = Napi::Object::New(env);
  version.Set("compiled", std::to_string(DB_VERSION_MAJOR) + "." + std::to_string(DB_VERSION_MINOR) + "." + std::to_string(DB_VERSION_PATCH));
  version.Set("runtime", std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch));
  exports.Set("libdbVersion", version);
  mdb_version(&major, &minor, &patch);
  Napi::Object lmdbVersion = Napi::Object::New(env);
  lmdbVersion.Set("compiled", std::to_string(MDB_VERSION_MAJOR) + "." + std::to_string(MDB_VERSION_MINOR) + "." + std::to_string(MDB_VERSION_PATCH));
  lmdbVersion.Set("runtime", std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch));
  exports.Set("lmdbVersion", lmdbVersion);
  return exports;
}

}  // namespace

void InitPatterns(Napi::Env env, Napi::Object exports);  // native/patterns.cc
static Napi::Object InitAll(Napi::Env env, Napi::Object exports) { InitPatterns(env, Init(env, exports)); return exports; }
NODE_API_MODULE(postfix_native, InitAll)
