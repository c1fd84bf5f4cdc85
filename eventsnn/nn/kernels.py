"""Fused CPU kernels for the neuron recurrence (numba): one pass over memory forward, one back.

`fused_sequence` is a `torch.autograd.Function` over all T steps: forward runs the recurrence of
`eventsnn.nn.functional` elementwise with the state in registers, saves only the membrane trace
(plus the synaptic and adaptation traces when those exist), and backward walks time in reverse with
the analytic derivative, so autograd keeps one node per layer instead of ~5 per time step. Same
float operations in the same order as `functional.neuron_step`, so the forward is bit-identical.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from eventsnn.nn.functional import NeuronConfig, NeuronState

# slots of the scalar array (kept in the data's dtype so float32 maths stays float32)
_THR, _AMOUNT, _LOW, _RHO, _SCALE, _SPARAM, _ZERO, _ONE = range(8)
# slots of the integer flag array
(
    _MODE,
    _MULTI,
    _DELAY,
    _SYN,
    _ADAPT,
    _KIND,
    _HAS_AMOUNT,
    _HAS_LOW,
    _DETACH,
    _NEED_BETA,
    _NEED_ALPHA,
    _HAS_GS,
    _HAS_GU,
) = range(13)
_RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
_BLOCK = 2048  # features per work item: long enough to vectorise, short enough to share out


def applies(x: torch.Tensor, cfg: NeuronConfig) -> bool:
    """True when the fused kernel can run this input and config (CPU floats, known surrogate)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() >= 2
        and cfg.surrogate.kind >= 0
    )


@njit(inline="always", cache=True)
def _surrogate(kind, p, z):
    if kind == 0:
        d = p * abs(z) + 1.0
        return 1.0 / (d * d)
    if kind == 1:
        w = math.pi / 2.0 * p * z
        return (p / 2.0) / (1.0 + w * w)
    if kind == 2:
        sig = 1.0 / (1.0 + math.exp(-p * z))
        return p * sig * (1.0 - sig)
    if kind == 3:
        r = 1.0 - abs(z) / p
        return r / p if r > 0.0 else 0.0
    if kind == 4:
        return 1.0 / p if abs(z) < p / 2.0 else 0.0
    return 1.0


@njit(inline="always", cache=True)
def _spike(u, theta, multi, zero, one):
    if multi:
        return np.floor(u / theta) if u > zero else zero
    return one if u >= theta else zero


@njit(inline="always", cache=True)
def _reset(u, s, amount, mode, zero, one):
    if mode == 0:
        return u - amount * s
    if mode == 1:
        return u * (one - (one if s > zero else zero))
    return u


@njit(inline="always", cache=True)
def _clamp(v, low, has_low, zero):
    if has_low:
        return max(v - low, zero) + low
    return v


@njit(inline="always", cache=True)
def _membrane_after(u, a_before, sc, fl):
    """The state v after step t, rebuilt from that step's membrane u and adaptation."""
    if fl[_DELAY]:
        return u
    theta = sc[_THR] + sc[_SCALE] * a_before if fl[_ADAPT] else sc[_THR]
    amount = sc[_AMOUNT] if fl[_HAS_AMOUNT] else theta
    s = _spike(u, theta, fl[_MULTI], sc[_ZERO], sc[_ONE])
    pre = _reset(u, s, amount, fl[_MODE], sc[_ZERO], sc[_ONE])
    return _clamp(pre, sc[_LOW], fl[_HAS_LOW], sc[_ZERO])


@njit(parallel=True, cache=True, nogil=True)
def _forward(x, beta, alpha, sc, fl, v, i, a, s_out, u_out, i_seq, a_seq):  # pragma: no cover
    """x (T, B, F); v, i, a (B, F) start as the initial state and end as the final one."""
    n_t, n_b, n_f = x.shape
    zero, one = sc[_ZERO], sc[_ONE]
    thr, low, rho, scale = sc[_THR], sc[_LOW], sc[_RHO], sc[_SCALE]
    mode, multi, delay = fl[_MODE], fl[_MULTI], fl[_DELAY]
    syn, adapt, has_low, has_amount = fl[_SYN], fl[_ADAPT], fl[_HAS_LOW], fl[_HAS_AMOUNT]
    blocks = (n_f + _BLOCK - 1) // _BLOCK
    for job in prange(n_b * blocks):
        b = job // blocks
        lo = (job % blocks) * _BLOCK
        hi = min(n_f, lo + _BLOCK)
        for t in range(n_t):
            for f in range(lo, hi):
                drive = x[t, b, f]
                if syn:
                    drive = alpha[f] * i[b, f] + drive
                    i[b, f] = drive
                    i_seq[t, b, f] = drive
                theta = thr
                if adapt:
                    a_seq[t, b, f] = a[b, f]
                    theta = thr + scale * a[b, f]
                amount = sc[_AMOUNT] if has_amount else theta
                vv = v[b, f]
                if delay:
                    pending = one if vv >= theta else zero
                    uu = beta[f] * vv + drive - amount * pending
                    ss = one if uu >= theta else zero
                    v[b, f] = uu
                else:
                    uu = beta[f] * vv + drive
                    ss = _spike(uu, theta, multi, zero, one)
                    v[b, f] = _clamp(_reset(uu, ss, amount, mode, zero, one), low, has_low, zero)
                if adapt:
                    a[b, f] = rho * a[b, f] + ss
                u_out[t, b, f] = uu
                s_out[t, b, f] = ss


@njit(parallel=True, cache=True, nogil=True)
def _backward(
    gs, gu_ext, u, i_seq, a_seq, v0, i0, beta, alpha, sc, fl, gx, gv, gi, ga, gbeta, galpha
):  # pragma: no cover
    """Reverse-time pass; gv, gi, ga start as the final state's grads, end as the initial's."""
    n_t, n_b, n_f = u.shape
    zero, one = sc[_ZERO], sc[_ONE]
    thr, low, rho, scale, sparam = sc[_THR], sc[_LOW], sc[_RHO], sc[_SCALE], sc[_SPARAM]
    mode, delay, multi, kind = fl[_MODE], fl[_DELAY], fl[_MULTI], fl[_KIND]
    syn, adapt, has_low, has_amount = fl[_SYN], fl[_ADAPT], fl[_HAS_LOW], fl[_HAS_AMOUNT]
    detach, need_beta, need_alpha = fl[_DETACH], fl[_NEED_BETA], fl[_NEED_ALPHA]
    has_gs, has_gu = fl[_HAS_GS], fl[_HAS_GU]
    blocks = (n_f + _BLOCK - 1) // _BLOCK
    for job in prange(n_b * blocks):
        b = job // blocks
        lo = (job % blocks) * _BLOCK
        hi = min(n_f, lo + _BLOCK)
        for t in range(n_t - 1, -1, -1):
            for f in range(lo, hi):
                uu = u[t, b, f]
                a_before = a_seq[t, b, f] if adapt else zero
                theta = thr + scale * a_before if adapt else thr
                amount = sc[_AMOUNT] if has_amount else theta
                sg = _surrogate(kind, sparam, uu - theta)
                ss = _spike(uu, theta, multi, zero, one)
                gs_tot = gs[t, b, f] if has_gs else zero
                if adapt:
                    gs_tot += ga[b, f]
                g = gv[b, f]
                need_prev = need_beta or (delay and not detach)
                if t > 0:
                    a_prev = a_seq[t - 1, b, f] if adapt else zero
                    v_prev = _membrane_after(u[t - 1, b, f], a_prev, sc, fl) if need_prev else zero
                else:
                    v_prev = v0[b, f]
                g_theta = zero
                if delay:
                    gu = g + gs_tot * sg
                else:
                    if has_low:
                        pre = _reset(uu, ss, amount, mode, zero, one)
                        g = g if pre - low > zero else zero
                    if mode == 0:
                        gu = g
                        if not detach:
                            gs_tot -= amount * g
                            if not has_amount:
                                g_theta -= ss * g
                    elif mode == 1:
                        gu = g * (one - (one if ss > zero else zero))
                        if not detach:
                            gs_tot -= uu * g
                    else:
                        gu = g
                    gu += gs_tot * sg
                    g_theta -= gs_tot * sg
                    if adapt:
                        ga[b, f] = rho * ga[b, f] + scale * g_theta
                if has_gu:
                    gu += gu_ext[t, b, f]
                g_prev = beta[f] * gu
                if delay and not detach:
                    g_prev -= amount * gu * _surrogate(kind, sparam, v_prev - theta)
                if need_beta:
                    gbeta[b, f] += gu * v_prev
                if syn:
                    gi_tot = gu + gi[b, f]
                    gx[t, b, f] = gi_tot
                    if need_alpha:
                        galpha[b, f] += gi_tot * (i_seq[t - 1, b, f] if t > 0 else i0[b, f])
                    gi[b, f] = alpha[f] * gi_tot
                else:
                    gx[t, b, f] = gu
                gv[b, f] = g_prev


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _per_feature(p: torch.Tensor | None, feat: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """A decay broadcast to one sample's feature shape and flattened (F,)."""
    if p is None:
        return torch.zeros(1, dtype=like.dtype)
    return torch.broadcast_to(p.detach().to(like.dtype), feat).reshape(-1).contiguous()


def _state(t: torch.Tensor | None, shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    if t is None:
        return torch.zeros((0, 0), dtype=like.dtype)
    return t.detach().reshape(shape).to(like.dtype).clone()


def _set_threads() -> None:
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


class _FusedNeuron(torch.autograd.Function):
    """The whole recurrence as one autograd node (see module docstring)."""

    @staticmethod
    def forward(ctx, x, v0, i0, a0, beta, alpha, cfg: NeuronConfig):  # noqa: D102
        n_t, n_b, feat = x.shape[0], x.shape[1], x.shape[2:]
        n_f = math.prod(feat)
        x3 = x.detach().contiguous().view(n_t, n_b, n_f)
        beta_f = _per_feature(beta, feat, x)
        alpha_f = _per_feature(alpha, feat, x)
        sc = np.array(
            [
                cfg.threshold,
                0.0 if cfg.reset_amount is None else cfg.reset_amount,
                0.0 if cfg.threshold_low is None else cfg.threshold_low,
                0.0 if cfg.adapt_decay is None else cfg.adapt_decay,
                cfg.adapt_scale,
                cfg.surrogate.param,
                0.0,
                1.0,
            ],
            dtype=x3.numpy().dtype,
        )
        fl = np.array(
            [
                _RESET_CODES[cfg.reset],
                cfg.multi_spike,
                cfg.reset_delay,
                alpha is not None,
                cfg.adaptive,
                cfg.surrogate.kind,
                cfg.reset_amount is not None,
                cfg.threshold_low is not None,
                cfg.detach_reset,
                beta.requires_grad,
                alpha is not None and alpha.requires_grad,
                1,
                1,
            ],
            dtype=np.int64,
        )
        v = _state(v0, (n_b, n_f), x)
        i = _state(i0, (n_b, n_f), x)
        a = _state(a0, (n_b, n_f), x)
        s = torch.empty_like(x3)
        u = torch.empty_like(x3)
        i_seq = torch.empty_like(x3) if alpha is not None else torch.zeros((0, 0, 0), dtype=x.dtype)
        a_seq = torch.empty_like(x3) if cfg.adaptive else torch.zeros((0, 0, 0), dtype=x.dtype)
        _set_threads()
        _forward(
            _np(x3), _np(beta_f), _np(alpha_f), sc, fl, _np(v), _np(i), _np(a),
            _np(s), _np(u), _np(i_seq), _np(a_seq),
        )  # fmt: skip
        ctx.save_for_backward(u, i_seq, a_seq, v0.detach().reshape(n_b, n_f), beta, alpha)
        ctx.i0 = _state(i0, (n_b, n_f), x)
        ctx.sc, ctx.fl, ctx.shapes = sc, fl, (x.shape, v0.shape, feat, n_f)
        ctx.set_materialize_grads(False)
        empty = x.new_zeros(0)
        return (
            s.view(x.shape),
            u.view(x.shape),
            v.view(v0.shape),
            i.view(v0.shape) if alpha is not None else empty,
            a.view(v0.shape) if cfg.adaptive else empty,
        )

    @staticmethod
    def backward(ctx, g_s, g_u, g_v, g_i, g_a):  # noqa: D102
        u, i_seq, a_seq, v0, beta, alpha = ctx.saved_tensors
        x_shape, state_shape, feat, n_f = ctx.shapes
        n_t, n_b = x_shape[0], x_shape[1]
        fl = ctx.fl.copy()
        fl[_HAS_GS] = g_s is not None
        fl[_HAS_GU] = g_u is not None
        fl[_NEED_BETA] = ctx.needs_input_grad[4]
        fl[_NEED_ALPHA] = ctx.needs_input_grad[5]
        dummy = u.new_zeros((0, 0, 0))

        def seq(g: torch.Tensor | None) -> torch.Tensor:
            return dummy if g is None else g.contiguous().view(n_t, n_b, n_f)

        def carried(g: torch.Tensor | None, used: bool) -> torch.Tensor:
            if not used:
                return u.new_zeros((0, 0))
            if g is None or g.numel() == 0:
                return u.new_zeros((n_b, n_f))
            return g.reshape(n_b, n_f).clone()

        gx = torch.empty_like(u)
        gv = carried(g_v, True)
        gi = carried(g_i, alpha is not None)
        ga = carried(g_a, bool(fl[_ADAPT]))
        gbeta = u.new_zeros((n_b, n_f)) if fl[_NEED_BETA] else u.new_zeros((0, 0))
        galpha = u.new_zeros((n_b, n_f)) if fl[_NEED_ALPHA] else u.new_zeros((0, 0))
        _set_threads()
        _backward(
            _np(seq(g_s)), _np(seq(g_u)), _np(u), _np(i_seq), _np(a_seq), _np(v0), _np(ctx.i0),
            _np(_per_feature(beta, feat, u)), _np(_per_feature(alpha, feat, u)), ctx.sc, fl,
            _np(gx), _np(gv), _np(gi), _np(ga), _np(gbeta), _np(galpha),
        )  # fmt: skip

        def param_grad(acc: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return acc.sum(0).view(feat).sum_to_size(p.shape).to(p.dtype)

        return (
            gx.view(x_shape),
            gv.view(state_shape),
            gi.view(state_shape) if ctx.needs_input_grad[2] else None,
            ga.view(state_shape) if ctx.needs_input_grad[3] else None,
            param_grad(gbeta, beta) if fl[_NEED_BETA] else None,
            param_grad(galpha, alpha) if fl[_NEED_ALPHA] else None,
            None,
        )


def fused_sequence(
    x: torch.Tensor,
    state: NeuronState,
    beta: torch.Tensor,
    alpha: torch.Tensor | None,
    cfg: NeuronConfig,
) -> tuple[torch.Tensor, torch.Tensor, NeuronState]:
    """`functional.neuron_loop`'s result through the fused kernel (CPU, float32/float64)."""
    s, u, v, i, a = _FusedNeuron.apply(x, state.v, state.i, state.a, beta, alpha, cfg)
    return s, u, NeuronState(v, i if alpha is not None else None, a if cfg.adaptive else None)
