"""The EMA update of many shadows in one op, bit for bit TF1's.

TF1 updates each shadow with three kernels, Sub, Mul and AssignSubVariableOp:

    one_minus_decay = cast(1 - decay in float32, dtype)
    shadow         -= (shadow - value) * one_minus_decay

which reads and writes the tensor eight times and costs five or six ops per
variable. ``fused_ops`` computes the same thing, rounding exactly where TF1
rounds, in one custom op ``Tf1EmaUpdate`` for all the shadows of a device: one
pass over memory (read shadow, read value, write shadow) and one kernel launch;
values that are resource variables are read inside the op, by handle, which
also saves their ReadVariableOps.

The op is C++ (``tf1_ema/cc/ema_update.cc``), compiled on first use against
the installed TensorFlow's headers (``tf.sysconfig`` flags, ``-O3
-ffp-contract=off``, so no fused multiply-add changes the bits) and cached in
``$TF1_EMA_CACHE_DIR`` (default ``~/.cache/tf1_ema``) under a name keyed by
the TensorFlow version and flags, the source and the platform (``python -m
tf1_ema._update_op`` builds it ahead of time; the key names no compiler, so
such a library serves a machine without one). A checksum written after the
library is checked before every load: a damaged file is rebuilt, or skipped.
When it cannot be had (no compiler, no headers), the update is built from
TF1's kernels by ``tf1_ema._build`` (the one update recipe) and one line on
stderr says why; ``TF1_EMA_FAST=0`` turns the custom op off. This module is
only the op: which pairs reach it is ``tf1_ema._build.plain_updates``'s call.

Only CPU kernels exist: a shadow that may live on a GPU, on a remote job, or
inside a distribution strategy gets TF1's kernels; so does an update built
inside a function body (``tf.function``), which is serialized apart.

Portability: the op lives only in the running graph. Every GraphDef
TensorFlow writes from it (``sess.graph_def``, ``export_meta_graph``,
``Saver.save``'s ``.meta``, SavedModels) holds TF1's own ops for each pair
instead (``to_stock_graph_def``, hooked into TensorFlow's serializer by
``_tf_internal.install_graph_def_rewriter``), so it loads, serves and trains
on with the same bits where TensorFlow alone is installed. Where that hook
cannot be installed the op is not used. The library still registers the
``Tf1EmaInitialValue(Ref)`` ops that graphs of earlier tf1_ema versions hold,
so that those import (``with_library``).

What changes for users: nothing in the variables (names, shadows,
checkpoints, ``variables_to_restore``), nor in a written graph's values; the
running graph's update ops differ. One bit pattern differs on purpose: a
bfloat16 NaN result is always 0x7fc0, where stock kernels give 0x7fc0 in
their vectorized lanes and keep the sign in their scalar tail.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from tf1_ema import _tf_internal

_v1 = tf.compat.v1

FAST_ENV = "TF1_EMA_FAST"
CACHE_ENV = "TF1_EMA_CACHE_DIR"
SOURCE = Path(__file__).with_name("cc") / "ema_update.cc"
# -ffp-contract=off: `s - d * k` must stay a multiply then a subtract.
CXX_FLAGS = ("-O3", "-ffp-contract=off", "-fPIC", "-shared", "-w")
FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
# Every op of the library; graphs written since the rewrite on serialization hold none of them.
OP_TYPES = ("Tf1EmaUpdate", "Tf1EmaUpdateByName", "Tf1EmaUpdateRef", "Tf1EmaInitialValue", "Tf1EmaInitialValueRef")
BUILD_TIMEOUT_S = 600  # a build takes 6-20 s on 2 cores; a hung compiler must not hang training

_lock = threading.Lock()
_library = None  # the loaded op module, once built
_failure: Optional[str] = None  # why it could not be built, once tried
_notice_printed = False
# Whether the fallback notice is printed (tf1-ema run and the kernel turn it off
# unless --tf-log: a TF1 program's output must stay its own).
notice_enabled = True


# ---------------------------------------------------------------------------
# Building and loading the op library
# ---------------------------------------------------------------------------


def fast_path_enabled() -> bool:
    """False when ``TF1_EMA_FAST`` is set to ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get(FAST_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where compiled libraries live: ``$TF1_EMA_CACHE_DIR``, else ``$XDG_CACHE_HOME/tf1_ema``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tf1_ema"


def _compiler() -> Optional[str]:
    """The C++ compiler: ``$CXX``, else ``c++`` or ``g++`` on the PATH."""
    for candidate in (os.environ.get("CXX"), "c++", "g++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _build_flags() -> List[str]:
    """Our flags, then TensorFlow's compile and link flags."""
    return list(CXX_FLAGS) + list(tf.sysconfig.get_compile_flags()) + list(tf.sysconfig.get_link_flags())


def library_path() -> Path:
    """The cache file the library for this TensorFlow and source is (or will be) built to.

    The key is the source, TensorFlow's version and flags, and the platform,
    not the compiler: a library built ahead of time (an image, ``python -m
    tf1_ema._update_op``) serves a machine without one, and computing the
    key starts no process.
    """
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__, " ".join(_build_flags()), platform.machine(), sys.platform):
        key.update(part if isinstance(part, bytes) else part.encode())
    return cache_dir() / ("ema_update-tf%s-%s.so" % (tf.__version__, key.hexdigest()[:16]))


def _checksum_path(library: Path) -> Path:
    """The sidecar holding the SHA-256 of ``library``, written after the library itself."""
    return library.with_name(library.name + ".sha256")


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".write-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def verified(library: Path) -> bool:
    """Whether ``library`` exists and matches the checksum written after it was built.

    Loading a truncated or damaged shared library can kill the process
    (SIGBUS) before any exception: an unverified file is never loaded.
    """
    try:
        expected = _checksum_path(library).read_text().split()[0]
        return _sha256(library) == expected
    except (OSError, IndexError):
        return False


def build(force: bool = False) -> Path:
    """Compiles the op library into the cache (unless a verified one is there) and returns its path.

    The library is written to a temporary file in the cache directory and
    renamed into place, then its checksum is written next to it the same way,
    so processes building at the same time never load a partial file (a
    checksum that does not match makes the next process build again).

    Raises:
      RuntimeError: no compiler, or the compiler failed (the message says why).
      subprocess.TimeoutExpired: the compiler ran longer than BUILD_TIMEOUT_S.
    """
    target = library_path()
    if not force and verified(target):
        return target
    cxx = _compiler()
    if cxx is None:
        damaged = " (the cached %s is damaged)" % target.name if target.exists() else ""
        raise RuntimeError("no C++ compiler found (install g++ or set CXX)%s" % damaged)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        cmd = [cxx, str(SOURCE), "-o", tmp] + _build_flags()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "error" in line] or proc.stderr.splitlines()
            raise RuntimeError("%s failed: %s" % (os.path.basename(cxx), (errors or ["no output"])[0].strip()))
        os.chmod(tmp, 0o755)
        checksum = _sha256(Path(tmp))
        os.replace(tmp, target)
        _write_atomically(_checksum_path(target), (checksum + "  " + target.name + "\n").encode())
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_library():
    """The loaded op module, building it on first use; None when it cannot be had.

    Tries once per process. On failure, prints one line to stderr (once) and
    returns None, so that callers take the graph path.
    """
    global _library, _failure, _notice_printed
    with _lock:
        if _library is not None or _failure is not None:
            return _library
        try:
            path = build()
            if not verified(path):  # replaced by a damaged file since
                raise RuntimeError("the cached %s does not match its checksum" % path.name)
            _library = tf.load_op_library(str(path))
        except Exception as e:  # pylint: disable=broad-except
            # Anything from a missing compiler to a stale TensorFlow ABI: the
            # graph path computes the same bits, only slower.
            _failure = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if _failure is not None and not _notice_printed and notice_enabled:
            _notice_printed = True
            print(
                "tf1_ema: fast EMA update unavailable (%s); using graph ops, same values, slower. "
                "To enable it install g++ (TensorFlow's pip wheel has the headers) and make %s (default "
                "~/.cache/tf1_ema) writable; set %s=0 to silence this." % (_failure, CACHE_ENV, FAST_ENV),
                file=sys.stderr,
            )
        return _library


def load_if_built() -> None:
    """Loads the op library if it is already compiled, so graphs using its ops import; never compiles.

    Called when tf1_ema's EMA is imported, so that a graph written by an
    older tf1_ema (whose GraphDefs held the op) imports with
    ``tf.compat.v1.train.import_meta_graph``. Starts no process; a library
    that does not match its checksum is not loaded.
    """
    global _library
    if _library is not None or not fast_path_enabled():
        return
    with _lock:
        path = library_path()
        if _library is None and verified(path):
            try:
                _library = tf.load_op_library(str(path))
            except Exception:  # pylint: disable=broad-except
                pass  # load_library() tries again, and says why, when the op is needed


def _needs_library(error: Exception) -> bool:
    """Whether ``error`` is TensorFlow refusing a graph because one of our ops is not registered."""
    message = str(error)
    return "not registered" in message and any("'%s'" % t in message for t in OP_TYPES)


def with_library(import_fn: Callable) -> Callable:
    """Wraps a graph importer so that a graph using tf1_ema's ops loads (or builds) the library first.

    Graphs written by tf1_ema since the fused op is rewritten on
    serialization hold only stock ops; older ones may hold its ops. Without
    the library TensorFlow refuses such a graph ("Op type not registered
    'Tf1EmaUpdateByName'"); the wrapper then loads it and imports again, or
    says how to get a graph without the op.
    """

    @functools.wraps(import_fn)
    def wrapper(*args, **kwargs):
        try:
            result = import_fn(*args, **kwargs)
        except Exception as e:  # pylint: disable=broad-except
            if not _needs_library(e):
                raise
            if load_library() is None:
                raise RuntimeError(
                    "This graph uses tf1_ema's EMA ops, which could not be built here (%s). "
                    "Install g++, or re-export the graph from a session built with %s=0 (TF1's ops only)."
                    % (_failure, FAST_ENV)
                ) from e
            result = import_fn(*args, **kwargs)
        if _library is not None and not tf.executing_eagerly() and _portable_fused_ops():
            # Fused update ops imported from an older tf1_ema's graph are written back as stock ops too.
            _fused_graphs.add(_v1.get_default_graph())
        return result

    return wrapper


# ---------------------------------------------------------------------------
# Portable graphs: the fused ops written as TensorFlow's own ops
# ---------------------------------------------------------------------------

UPDATE_OP_TYPES = ("Tf1EmaUpdate", "Tf1EmaUpdateByName", "Tf1EmaUpdateRef")
# Graphs that hold (or imported) a fused update op; only their GraphDefs are rewritten.
_fused_graphs: "weakref.WeakSet" = weakref.WeakSet()


def _attr(**value):
    """An ``AttrValue`` proto with one field set."""
    return _v1.AttrValue(**value)


def _new_node(graph_def, taken: set, name: str, op: str, inputs: Sequence[str], device: str, **attrs):
    """Appends a NodeDef named ``name`` (made unique against ``taken``) and returns its name."""
    unique, n = name, 0
    while unique in taken:
        n += 1
        unique = "%s_%d" % (name, n)
    taken.add(unique)
    node = graph_def.node.add(name=unique, op=op, input=list(inputs), device=device)
    for key, value in attrs.items():
        node.attr[key].CopyFrom(value)
    return unique


def _var_handle_ops(graph) -> Dict:
    """``{(container, shared_name): VarHandleOp}`` of the live ``graph``."""
    found = {}
    for op in graph.get_operations():
        if op.type == "VarHandleOp":
            found[(op.get_attr("container").decode(), op.get_attr("shared_name").decode())] = op
    return found


def _stock_pairs(graph, node, handle_ops) -> Optional[List[tuple]]:
    """``[(kind, shadow input, value input, value is a handle, dtype enum)]`` of a fused node, else None.

    ``kind`` is ``"resource"`` or ``"ref"``. None when a variable the node
    names cannot be found in ``graph`` (the node then stays as it is).
    """
    data = [i for i in node.input if not i.startswith("^")]
    if node.op == "Tf1EmaUpdateRef":
        n = len(node.attr["T"].list.type)
        return [("ref", data[i], data[n + i], False, node.attr["T"].list.type[i]) for i in range(n)]
    n, m = node.attr["N"].i, node.attr["M"].i
    tensor_types = list(node.attr["T"].list.type)
    if node.op == "Tf1EmaUpdateByName":
        default = node.attr["container"].s.decode()
        names = zip(node.attr["containers"].list.s, node.attr["shared_names"].list.s)
        handles = []
        for container, shared_name in names:
            op = handle_ops.get((container.decode() or default, shared_name.decode()))
            if op is None:
                return None
            handles.append((op.name, op.get_attr("dtype").as_datatype_enum))
        tensors = data[:-1]
    else:
        handles = []
        for name in data[: n + m]:
            try:
                op = graph.get_operation_by_name(name.split(":")[0])
            except KeyError:
                return None
            if op.type != "VarHandleOp":
                return None
            handles.append((name, op.get_attr("dtype").as_datatype_enum))
        tensors = data[n + m : -1]
    pairs = []
    for i in range(n):
        shadow, dtype = handles[i]
        if i < m:
            pairs.append(("resource", shadow, handles[n + i][0], True, dtype))
        else:
            pairs.append(("resource", shadow, tensors[i - m], False, tensor_types[i - m]))
    return pairs


def to_stock_graph_def(graph, graph_def) -> None:
    """Rewrites each fused update node of ``graph_def`` into TF1's own ops for it, in place.

    Per pair, as TF1's ``assign_moving_average`` builds it: the shadow's
    value (``ReadVariableOp``, or the ref variable itself), the value
    (``ReadVariableOp`` for a variable read by handle), ``Sub``, ``Mul`` by
    ``1 - decay`` cast to the shadow's dtype, then ``AssignSubVariableOp``
    (``AssignSub``); the fused node becomes a ``NoOp`` of the same name that
    waits for all of them, so the train op's name and control edges stay valid.
    The values are TF1's bit for bit, which is what the fused op computes, so a
    graph written from a session resumes with the same bits in a process with
    TensorFlow alone. Called on every GraphDef TensorFlow writes
    (``_tf_internal.install_graph_def_rewriter``); the running graph keeps the
    fused op.

    Args:
      graph: the live ``tf.Graph`` the GraphDef was written from.
      graph_def: its ``GraphDef``.
    """
    if graph not in _fused_graphs:
        return
    fused = [i for i, node in enumerate(graph_def.node) if node.op in UPDATE_OP_TYPES]
    if not fused:
        return
    handle_ops = _var_handle_ops(graph)
    taken = {node.name for node in graph_def.node}
    float32 = tf.float32.as_datatype_enum
    for index in fused:
        node = graph_def.node[index]
        pairs = _stock_pairs(graph, node, handle_ops)
        if pairs is None:
            continue
        controls = [i for i in node.input if i.startswith("^")]
        one_minus_decay = [i for i in node.input if not i.startswith("^")][-1]
        # The fused op reads the variables once its inputs are ready; TensorFlow
        # drops a control edge that an input already implies (`1 - decay` built
        # under the same control_dependencies), so the reads wait on the input.
        after = controls + ["^" + one_minus_decay.split(":")[0]]
        device = node.device
        casts: Dict[int, str] = {}
        assigns = []
        for j, (kind, shadow, value, value_is_handle, dtype) in enumerate(pairs):
            scope = "%s/%d/" % (node.name, j)
            t = _attr(type=dtype)
            if dtype not in casts:
                # TF1 parity: `1 - decay` is computed in float32 and only then cast.
                casts[dtype] = one_minus_decay if dtype == float32 else _new_node(
                    graph_def, taken, "%s/Cast_%d" % (node.name, len(casts)), "Cast", [one_minus_decay] + controls,
                    device, SrcT=_attr(type=float32), DstT=t, Truncate=_attr(b=False))  # fmt: skip
            if kind == "resource":
                shadow_value = _new_node(graph_def, taken, scope + "ReadVariableOp", "ReadVariableOp",
                                         [shadow] + after, device, dtype=t)  # fmt: skip
            else:
                shadow_value = shadow
            if value_is_handle:
                value = _new_node(graph_def, taken, scope + "ReadVariableOp_1", "ReadVariableOp", [value] + after,
                                  device, dtype=t)  # fmt: skip
            sub = _new_node(graph_def, taken, scope + "sub", "Sub", [shadow_value, value] + after, device, T=t)
            mul = _new_node(graph_def, taken, scope + "mul", "Mul", [sub, casts[dtype]], device, T=t)
            if kind == "resource":
                assign = _new_node(graph_def, taken, scope + "AssignSubVariableOp", "AssignSubVariableOp",
                                   [shadow, mul], device, dtype=t)  # fmt: skip
            else:
                assign = _new_node(graph_def, taken, scope + "AssignSub", "AssignSub", [shadow, mul], device, T=t,
                                   use_locking=_attr(b=node.attr["use_locking"].b))  # fmt: skip
            assigns.append("^" + assign)
        replacement = _v1.NodeDef(name=node.name, op="NoOp", input=controls + assigns, device=device)
        if "_class" in node.attr:
            replacement.attr["_class"].CopyFrom(node.attr["_class"])
        node.CopyFrom(replacement)


def _portable_fused_ops() -> bool:
    """Whether GraphDefs written from graphs with fused ops get stock ops instead (the hook is in place)."""
    return _tf_internal.install_graph_def_rewriter(to_stock_graph_def)


# ---------------------------------------------------------------------------
# The update
# ---------------------------------------------------------------------------


def _is_plain_resource_variable(v) -> bool:
    """A local resource variable, not a distributed or other wrapper acting as one."""
    return (
        isinstance(v, tf.Variable)
        and tf.__internal__.ops.is_resource_variable(v)
        and not isinstance(v, tf.distribute.DistributedValues)
        and hasattr(v, "handle")
    )


def _reads_by_handle(v) -> bool:
    """Whether the op may read ``v`` itself: TF1 reads a variable with a caching device through its cached copy."""
    return _is_plain_resource_variable(v) and _tf_internal.caching_device(v) is None


@functools.lru_cache(maxsize=None)
def _gpu_present() -> bool:
    """Whether this process sees a GPU (the placer may then put unplaced ops there)."""
    return bool(tf.config.list_physical_devices("GPU"))


def _on_local_cpu(v, gpu_present: bool) -> bool:
    """Whether ``v`` surely lives on a CPU of this process, where the op has a kernel."""
    spec = tf.DeviceSpec.from_string(v.device or "")
    if spec.job not in (None, "localhost"):
        return False  # a remote task would need the op library loaded too
    if spec.device_type is not None:
        return spec.device_type.upper() == "CPU"
    return not gpu_present  # unplaced: the placer may pick a GPU


def _fusable_kind(shadow, value, gpu_present: bool) -> Optional[str]:
    """``"resource"`` or ``"ref"`` when the pair can go to the custom op, else None."""
    if shadow.dtype.base_dtype not in FUSED_DTYPES or value.dtype.base_dtype != shadow.dtype.base_dtype:
        return None
    if not (value.shape.is_fully_defined() and shadow.shape.is_fully_defined() and value.shape == shadow.shape):
        return None  # TF1 would broadcast; leave odd shapes to the graph ops
    if not _on_local_cpu(shadow, gpu_present):
        return None
    if _is_plain_resource_variable(shadow):
        return "resource"
    if _tf_internal.is_ref_variable(shadow):
        return "ref"
    return None


def handle_op_name(v) -> Optional[tuple]:
    """``(container, shared_name)`` of a graph-mode variable's VarHandleOp, else None (eager, functions)."""
    handle = v.handle
    if not tf.is_symbolic_tensor(handle):
        return None  # an eager variable, also when a tf.function captures it
    op = handle.op
    if op.type != "VarHandleOp" or op.graph is not _v1.get_default_graph():
        return None
    name = op.get_attr("shared_name").decode()
    if not name or name.startswith("_AnonymousVar"):
        return None
    return op.get_attr("container").decode(), name


def _resource_update(shadows, values, idx, one_minus_decay, library) -> tf.Operation:
    """One op for the shadows ``idx`` (all resource variables on one device).

    Values that are resource variables on the shadow's device are read inside
    the op, which saves a ReadVariableOp per variable; the others are passed as
    tensors. In a TF1 graph the variables are named by their VarHandleOps'
    container and shared name (``Tf1EmaUpdateByName``), which also saves
    running those ops every step; elsewhere their handles are inputs
    (``Tf1EmaUpdate``).
    """
    by_handle = [i for i in idx if _reads_by_handle(values[i]) and values[i].device == shadows[i].device]
    handled = set(by_handle)
    by_tensor = [i for i in idx if i not in handled]
    variables = [shadows[i] for i in by_handle + by_tensor] + [values[i] for i in by_handle]
    tensors = [values[i] for i in by_tensor]
    for v in variables:
        _tf_internal.mark_read(v)
    names = [handle_op_name(v) for v in variables]
    # Under tf.container() TF fills the op's empty `container` attribute,
    # which names the container of the entries left empty (ema_update.cc).
    if all(names) and not (_tf_internal.graph_container(variables[0].graph) and any(not c for c, _ in names)):
        # The op has no handle inputs to pin it to the shadows' device: colocate it.
        with variables[0].graph.colocate_with(variables[0].op):
            return library.tf1_ema_update_by_name(
                tensors=tensors,
                one_minus_decay=one_minus_decay,
                N=len(idx),
                M=len(by_handle),
                containers=[c for c, _ in names],
                shared_names=[n for _, n in names],
            )
    return library.tf1_ema_update(
        shadows=[v.handle for v in variables[: len(idx)]],
        variables=[v.handle for v in variables[len(idx) :]],
        tensors=tensors,
        one_minus_decay=one_minus_decay,
    )


def _handles_are_var_handle_ops(variables) -> bool:
    """Whether the op may take these variables' handles: eagerly, or VarHandleOps of the graph being built.

    ``to_stock_graph_def`` can write an op on VarHandleOps back as stock ops;
    a function body (whose handles are captured inputs) is serialized apart
    from it, so a ``tf.function`` gets TensorFlow's ops and stays portable.
    """
    if tf.executing_eagerly():
        return True
    graph = _v1.get_default_graph()
    return all(
        tf.is_symbolic_tensor(v.handle) and v.handle.op.type == "VarHandleOp" and v.handle.graph is graph
        for v in variables
    )


def fused_ops(shadows: Sequence[tf.Variable], values: Sequence, one_minus_decay, eligible: Sequence[int]):
    """The fused update ops of the pairs ``eligible`` that the op can take, and the indices it cannot.

    ``tf1_ema._build.plain_updates`` calls this and builds the pairs returned
    as the rest with TF1's kernels. Shadows on this process's CPU go to one
    ``Tf1EmaUpdate(ByName)`` op per device (one pass over memory for all of
    them); ref-variable shadows to one ``Tf1EmaUpdateRef`` op per device. A
    shape TF1 would broadcast, a GPU/remote/distributed shadow, a dtype other
    than half/bfloat16/float/double, or any shadow when the op library is
    unavailable, ``TF1_EMA_FAST=0``, or TensorFlow's graph writer cannot be
    hooked (see ``to_stock_graph_def``), is left to the rest.

    Args:
      shadows: the shadow variables.
      values: tensors or variables, one per shadow.
      one_minus_decay: ``1 - decay`` as a float32 scalar tensor.
      eligible: indices of the pairs that may be fused (no shadow twice, no shadow read as a value).

    Returns:
      ``(ops, rest)``: the fused ops and the indices of ``eligible`` they do not update.
    """
    # A function body is serialized apart from its graph (as a FunctionDef),
    # where to_stock_graph_def does not reach: it gets TensorFlow's ops.
    fast = fast_path_enabled() and bool(eligible) and not tf.distribute.has_strategy() and not tf.inside_function()
    library = load_library() if fast else None
    if library is not None and not _portable_fused_ops():
        library = None  # a graph with the op could not be written with stock ops
    if library is None:
        return [], list(eligible)
    gpu_present = _gpu_present()
    groups: Dict = {}  # (kind, device) -> list of indices
    rest: List[int] = []
    for i in eligible:
        kind = _fusable_kind(shadows[i], values[i], gpu_present)
        if kind is None:
            rest.append(i)
        else:
            groups.setdefault((kind, shadows[i].device), []).append(i)

    updates = []
    for (kind, device), idx in groups.items():
        with tf.device(device):
            if kind == "resource":
                by_handle = [values[i] for i in idx if _reads_by_handle(values[i]) and values[i].device == shadows[i].device]
                if not _handles_are_var_handle_ops([shadows[i] for i in idx] + by_handle):
                    rest.extend(idx)  # to_stock_graph_def could not write the op back as stock ops
                    continue
                update = _resource_update(shadows, values, idx, one_minus_decay, library)
            else:
                # A ref variable's value is its ref, read by the op: TF1's `read`
                # snapshot computes nothing, but costs a node in the first run.
                refs = [_tf_internal.variable_ref(values[i]) if _tf_internal.is_ref_variable(values[i]) else values[i] for i in idx]
                update = library.tf1_ema_update_ref([shadows[i] for i in idx], refs, one_minus_decay)
            if not tf.executing_eagerly():
                _fused_graphs.add(_v1.get_default_graph())
            updates.append(update)
    return updates, rest


if __name__ == "__main__":  # python -m tf1_ema._update_op: build ahead of time (images, CI)
    import time

    _start = time.perf_counter()
    try:
        _path = build(force="--force" in sys.argv)
    except (RuntimeError, OSError, subprocess.SubprocessError) as _e:
        sys.exit("tf1_ema: op library not built (%s); apply() will use TensorFlow's ops, same values" % _e)
    print("tf1_ema op library: %s (%.1f s)" % (_path, time.perf_counter() - _start))
