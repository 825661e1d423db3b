// postfix_native: the few system calls Node does not offer, kept small and boring.
// Every decision (flags, NUL conventions, locking order, error wording) is made in
// TypeScript (src/lib/native/index.ts, src/lib/tables/berkeley-db.ts); this file only
// forwards calls to libdb 5.3 and to the C library, and turns failures into exceptions
// that carry `errno` (a number), `code` (its name, such as "EWOULDBLOCK", for system
// errors) and `reason` (strerror() or db_strerror() text, what Postfix's %m prints).
//
//   openDb(home, file, type, readOnly, create, cacheSize, hashNelem) -> Db
//   Db: get(key) put(key, value, noOverwrite) del(key) sync() fd() cursor() close()
//   Cursor: get(first) close()
//   flock(fd, op) fcntlLock(fd, type, wait) chroot(path) setsid()

#include <napi.h>
#include <db.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <string>
#include <sys/file.h>
#include <unistd.h>

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

Napi::Value copyOut(Napi::Env env, const DBT& dbt) {
  return Napi::Buffer<char>::Copy(env, static_cast<const char*>(dbt.data), dbt.size);
}

class Cursor;

class Db : public Napi::ObjectWrap<Db> {
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
    if ((ret = db_->open(db_, nullptr, file.c_str(), nullptr, type, flags, 0644)) != 0) Fail(env, ret, "open database");
    opened_ = true;
    if ((ret = db_->fd(db_, &fd_)) != 0) Fail(env, ret, "get database file descriptor");
  }

  void Forget(Cursor* c) { cursors_.erase(c); }
  void Adopt(Cursor* c) { cursors_.insert(c); }
  DB* handle() const { return db_; }

 private:
  DB_ENV* env_ = nullptr;
  DB* db_ = nullptr;
  int fd_ = -1;
  bool opened_ = false;  // DB->sync() only after a successful DB->open()
  std::set<Cursor*> cursors_;

  [[noreturn]] void Fail(Napi::Env env, int ret, const std::string& what) {
    CloseAll();
    throw errnoError(env, ret, what);
  }

  DB* Live(Napi::Env env) {
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
    int ret = db->get(db, nullptr, &k, &v, 0);
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
    int ret = db->put(db, nullptr, &k, &v, info[2].ToBoolean() ? DB_NOOVERWRITE : 0);
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
    int ret = db->del(db, nullptr, &k, 0);
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

  // Called by the Db when it closes first.
  void Detach() {
    if (dbc_) dbc_->close(dbc_);
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
    int ret = dbc_->get(dbc_, &k, &v, info[0].ToBoolean() ? DB_FIRST : DB_NEXT);
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

Napi::Value Setsid(const Napi::CallbackInfo& info) {
  pid_t sid = setsid();
  if (sid < 0) throw errnoError(info.Env(), errno, "setsid");
  return Napi::Number::New(info.Env(), sid);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Db::constructor = new Napi::FunctionReference(Napi::Persistent(Db::Init(env)));
  Cursor::constructor = new Napi::FunctionReference(Napi::Persistent(Cursor::Init(env)));
  exports.Set("openDb", Napi::Function::New(env, OpenDb));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("fcntlLock", Napi::Function::New(env, FcntlLock));
  exports.Set("chroot", Napi::Function::New(env, Chroot));
  exports.Set("setsid", Napi::Function::New(env, Setsid));

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
  exports.Set("constants", constants);
  Napi::Object version = Napi::Object::New(env);
  version.Set("compiled", std::to_string(DB_VERSION_MAJOR) + "." + std::to_string(DB_VERSION_MINOR) + "." + std::to_string(DB_VERSION_PATCH));
  version.Set("runtime", std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch));
  exports.Set("libdbVersion", version);
  return exports;
}

}  // namespace

NODE_API_MODULE(postfix_native, Init)
