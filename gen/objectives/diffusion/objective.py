"""The diffusion objective: a denoiser trained with `denoising_loss`, sampled with a gen sampler
(the contract: gen/objectives/contract.py; the math: gen/objectives/diffusion/__init__.py)."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gen import samplers
from gen import state as state_lib
from gen.metrics import likelihood
from gen.models import precision
from gen.objectives.contract import Capabilities, Samples
from gen.objectives.diffusion.loss import (
  denoising_loss,
  guided,
  loss_weight,
  micro_batches,
  sample_times,
)
from gen.processes import parameterization as param_lib

NET = 'denoiser'
TRAJECTORY_FRAMES = 8


@dataclasses.dataclass(frozen=True)
class Diffusion:
  """A denoiser network trained with `denoising_loss` and sampled with a gen sampler.

  Attributes:
    model: flax module `f(x, model_time, train, labels=None)`.
    process: forward process (gen.processes).
    parameterization: what the network predicts: eps | x0 | v | score | velocity.
    weighting: w(t), one of WEIGHTINGS.
    time_sampling: one of TIME_SAMPLINGS; `time_kw` holds its parameters.
    tx, lr_fn: optimizer and its schedule.
    ema_rate: EMA decay.
    shape: one example's shape.
    num_classes: > 0 for a class-conditional model (label `num_classes` is the null label).
    label_dropout: probability of training on the null label (classifier-free guidance).
    edm_preconditioning: wrap the network as c_skip x + c_out F(c_in x) (x0 prediction).
    sigma_data: EDM's data std.
    min_snr_gamma: gamma of the 'min_snr' weighting.
    sampler, num_steps, spacing, rho: how `sample` integrates (gen.samplers.SAMPLERS; N model
      times from `gen.samplers.timesteps(process, num_steps, spacing, rho)`).
    timesteps: explicit model times that replace num_steps and spacing (e.g. fitted by
      `gen.samplers.optimize_timesteps`); () = none.
    sampler_options: the sampler's own `config.diffusion.sample` fields (eta, variance, snr, ...).
    guidance_scale: classifier-free guidance w at sampling.
    use_ema: sample from the EMA parameters.
    grad_accum: micro-batches per step (gradient accumulation; see `step`).
    compute_dtype: 'float32' or 'bfloat16': the network's arithmetic (gen.models.precision).
    bpd_trace, bpd_rtol, bpd_atol: the probability-flow ODE of `bits_per_dim` (continuous
      processes): its divergence estimator (auto | exact | hutchinson) and tolerances.
  """

  capabilities = Capabilities(likelihood=True, grad_accum=True, bfloat16=True)

  model: nn.Module
  process: Any
  parameterization: str
  weighting: str
  time_sampling: str
  time_kw: dict
  tx: optax.GradientTransformation
  lr_fn: optax.Schedule
  ema_rate: float
  shape: tuple[int, ...]
  ema_warmup: float = 0.0
  num_classes: int = 0
  label_dropout: float = 0.0
  edm_preconditioning: bool = False
  sigma_data: float = 0.5
  min_snr_gamma: float = 5.0
  sampler: str = 'ddpm'
  num_steps: int = 1000
  spacing: str = 'uniform'
  rho: float = 7.0
  timesteps: tuple[float, ...] = ()
  sampler_options: dict = dataclasses.field(default_factory=dict)
  guidance_scale: float = 1.0
  use_ema: bool = True
  grad_accum: int = 1
  compute_dtype: str = 'float32'
  bpd_trace: str = 'auto'
  bpd_rtol: float = 1e-5
  bpd_atol: float = 1e-5

  # -- the network as a prediction of the declared kind ------------------------------------

  def predict(self, params, x, t, labels=None, train=False, dropout_key=None):
    """The network's output at (x_t, t), of kind `parameterization` (x0 under EDM precond)."""
    run = lambda p, inp: self.model.apply(
      {'params': p},
      inp,
      self.process.model_time(t),
      train,
      labels=labels,
      rngs={'dropout': dropout_key} if dropout_key is not None else {},
    )
    # train.compute_dtype: the network computes in bfloat16 if asked; everything else is float32.
    apply = lambda inp: precision.apply_in(self.compute_dtype, run, params, inp).astype(x.dtype)
    if not self.edm_preconditioning:
      return apply(x)
    _, sigma = self.process.marginal(t)
    c_skip, c_out, c_in = param_lib.edm_preconditioning(sigma, self.sigma_data)
    b = lambda c: c.reshape(c.shape + (1,) * (x.ndim - 1))
    return b(c_skip) * x + b(c_out) * apply(b(c_in) * x)

  @property
  def kind(self) -> str:
    return 'x0' if self.edm_preconditioning else self.parameterization

  def denoise_fn(self, params, labels=None, guidance_scale=1.0):
    """The model as (x0, eps) estimates, `fn(x_t, t) -> (x0, eps)`, for any sampler."""

    def fn(x, t):
      if labels is None or guidance_scale == 1.0:  # w = 1 is the conditional model alone
        pred = self.predict(params, x, t, labels)
      else:
        pred_fn = lambda xx, tt, ll: self.predict(params, xx, tt, ll)
        pred = guided(pred_fn, x, t, labels, self.num_classes, guidance_scale)
      return param_lib.to_x0_eps(self.kind, pred, x, t, self.process)

    return fn

  # -- the objective contract ---------------------------------------------------------------

  def init(self, rng: jax.Array, example_batch: dict[str, Any]) -> state_lib.TrainState:
    """Initialises the denoiser on an example batch; returns the step-0 state."""
    x = jnp.asarray(example_batch['x'])
    t = jnp.zeros((x.shape[0],), jnp.float32)
    labels = jnp.zeros((x.shape[0],), jnp.int32) if self.num_classes else None
    params = self.model.init(rng, x, t, False, labels=labels)['params']
    return state_lib.create_state({NET: params}, {NET: self.tx})

  def draw(self, batch: dict[str, Any], key: jax.Array) -> tuple[dict[str, Any], jax.Array]:
    """(the loss's randomness for the whole batch: data, times, noise, labels after label
    dropout; the key of the network's dropout masks). Drawn once per step, so micro-batches see
    the same draws as the whole batch."""
    x0 = batch['x']
    key_t, key_eps, key_drop, key_label = jax.random.split(key, 4)
    out = {
      'x': x0,
      't': sample_times(self.time_sampling, self.process, key_t, x0.shape[0], **self.time_kw),
      'eps': jax.random.normal(key_eps, x0.shape, x0.dtype),
    }
    if self.num_classes:
      drop = jax.random.bernoulli(key_label, self.label_dropout, (x0.shape[0],))
      out['labels'] = jnp.where(drop, self.num_classes, batch['label'])
    return out, key_drop

  def loss_of(self, params, drawn: dict[str, Any], key_drop: jax.Array) -> jax.Array:
    """`denoising_loss` of a batch whose randomness `draw` produced."""
    labels = drawn.get('labels')

    def x0_fn(x_t, tt):
      pred = self.predict(params, x_t, tt, labels, train=True, dropout_key=key_drop)
      return param_lib.to_x0_eps(self.kind, pred, x_t, tt, self.process)[0]

    t = drawn['t']
    weight = loss_weight(self.weighting, self.process, t, self.min_snr_gamma, self.sigma_data)
    return denoising_loss(x0_fn, self.process, drawn['x'], t, drawn['eps'], weight)

  def loss(self, params, batch, key: jax.Array) -> jax.Array:
    """The training loss of one batch (see `denoising_loss`)."""
    drawn, key_drop = self.draw(batch, key)
    return self.loss_of(params, drawn, key_drop)

  def step(self, state: state_lib.TrainState, batch: dict[str, Any], key: jax.Array):
    """One optimizer step on the loss; returns (state, metrics).

    With `grad_accum` = k > 1 the batch is cut into k micro-batches, whose gradients are
    summed in a `lax.scan` (activations of one micro-batch in memory at a time) and averaged:
    the same update as the whole batch, since the times and noise are drawn for the whole batch
    first. Micro-batch i takes rows i, i + k, i + 2k, ... (`micro_batches`): the batch is sharded
    over devices in contiguous blocks, so every device keeps its share of every micro-batch and
    no rows move between devices. Network dropout masks, where the model has dropout, are drawn
    per micro-batch (key `fold_in(dropout_key, i)`).
    """
    params = state.params[NET]
    if self.grad_accum == 1:
      loss, grads = jax.value_and_grad(self.loss)(params, batch, key)
    else:
      drawn, key_drop = self.draw(batch, key)
      k = self.grad_accum

      def one(carry, xs):
        mb, i = xs
        loss, grads = jax.value_and_grad(self.loss_of)(params, mb, jax.random.fold_in(key_drop, i))
        return jax.tree.map(jnp.add, carry, (loss, grads)), None

      zero = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
      xs = (micro_batches(drawn, k), jnp.arange(k))
      (loss, grads), _ = jax.lax.scan(one, zero, xs)
      loss, grads = jax.tree.map(lambda a: a / k, (loss, grads))
    new_state, grad_norm = state_lib.apply_gradients(
      state, NET, grads, self.tx, self.ema_rate, self.ema_warmup
    )
    metrics = {'loss': loss, f'grad_norm/{NET}': grad_norm, 'lr': self.lr_fn(state.step)}
    return new_state, metrics

  def _sample(self, state, rng, num: int, labels=None, trajectory: bool = False):
    params = (state.ema_params if self.use_ema else state.params)[NET]
    key_init, key_chain = jax.random.split(rng)
    if self.num_classes and labels is None:
      labels = jnp.arange(num, dtype=jnp.int32) % self.num_classes
    denoise = self.denoise_fn(params, labels if self.num_classes else None, self.guidance_scale)
    x_init = self.process.prior_std * jax.random.normal(key_init, (num, *self.shape))
    ts = self.sample_timesteps()
    result = samplers.run(
      self.sampler,
      denoise,
      self.process,
      x_init,
      key_chain,
      ts,
      trajectory=trajectory,
      **self.sampler_options,
    )
    return result, x_init, labels if self.num_classes else None

  def sample_timesteps(self) -> jax.Array:
    """The sampler's model times: `timesteps` if given, else num_steps by `spacing`."""
    if self.timesteps:
      dtype = jnp.int32 if self.process.is_discrete else jnp.float32
      return jnp.asarray(self.timesteps, dtype)
    return samplers.timesteps(self.process, self.num_steps, self.spacing, self.rho)

  def sample_protocol(self) -> dict[str, Any]:
    """How `sample` draws, for the eval JSON's protocol: the sampler and its settings."""
    out = {
      'sampler': self.sampler,
      'num_steps': self.num_steps,
      'spacing': self.spacing,
      **self.sampler_options,
      'use_ema': self.use_ema,
    }
    if self.timesteps:
      out.update(num_steps=len(self.timesteps), spacing='explicit', timesteps=list(self.timesteps))
    elif self.spacing == 'karras':
      out['rho'] = self.rho
    if self.num_classes:
      out['guidance_scale'] = self.guidance_scale
    return out

  def sample(self, state: state_lib.TrainState, rng: jax.Array, num: int, labels=None) -> Samples:
    """`num` samples (labels cycle through the classes when conditional, unless given) and the
    sampler's NFE."""
    result, _, labels = self._sample(state, rng, num, labels)
    return Samples(result.samples, labels, {'nfe': jnp.asarray(result.nfe, jnp.int32)})

  def trajectory(self, state: state_lib.TrainState, rng: jax.Array, num: int) -> jax.Array:
    """[TRAJECTORY_FRAMES, num, ...]: the prior noise, then states evenly along the sampler's
    path, ending with the samples (for a picture of the denoising)."""
    result, x_init, _ = self._sample(state, rng, num, trajectory=True)
    path = jnp.concatenate([x_init[None], result.trajectory], axis=0)
    last = path.shape[0] - 1
    index = sorted({round(i * last / (TRAJECTORY_FRAMES - 1)) for i in range(TRAJECTORY_FRAMES)})
    return path[jnp.asarray(index)]

  def pictures(self, state: state_lib.TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """Images: the denoising trajectory of 8 samples; other data: none."""
    return {'trajectory': self.trajectory(state, key, 8)} if len(self.shape) == 3 else {}

  def picture_captions(self) -> dict[str, str]:
    return {'trajectory': 'denoising: one row per sample, noise (left) to sample (right)'}

  def likelihood_protocol(self) -> dict[str, Any]:
    """How `bits_per_dim` computes, for the eval JSON's protocol."""
    if self.process.is_discrete:
      return {'method': 'ddpm_elbo', 'variance': self.sampler_options.get('variance', 'beta')}
    return {
      'method': 'probability_flow_ode',
      'trace': self.bpd_trace,
      'rtol': self.bpd_rtol,
      'atol': self.bpd_atol,
    }

  def bits_per_dim(
    self,
    state: state_lib.TrainState,
    x: jax.Array,
    key: jax.Array,
    num_bins: int = 0,
  ) -> dict[str, jax.Array]:
    """{'bpd', 'bpd_nfe'}: the likelihood of data x [B, ...] in bits/dim.

    Continuous processes: the probability-flow ODE (gen.metrics.likelihood.bits_per_dim_of):
    uniform dequantisation over `num_bins` levels (0: continuous data, no dequantisation),
    Dormand-Prince from t_min (1e-3 where t_min is noise-free) to t_max, the prior N(0,
    sigma_T^2). Discrete DDPM processes: Ho et al.'s variational bound over all T steps with
    the sampler's variance (`ddpm_elbo_bits_per_dim`; an upper bound on bits/dim). A
    conditional model is evaluated unconditionally (the null label).
    """
    params = (state.ema_params if self.use_ema else state.params)[NET]
    denoise = self.denoise_fn(params)
    if self.process.is_discrete:
      bpd, nfe = likelihood.ddpm_elbo_bits_per_dim(
        denoise,
        self.process,
        x,
        key,
        num_bins=num_bins or None,
        variance=self.sampler_options.get('variance', 'beta'),
      )
      return {'bpd': bpd, 'bpd_nfe': nfe}
    t_start = self.process.t_min if self.process.t_min > 0 else 1e-3
    bpd, nfe = likelihood.bits_per_dim_of(
      denoise,
      self.process,
      x,
      key,
      num_bins=num_bins or None,
      trace=self.bpd_trace,
      rtol=self.bpd_rtol,
      atol=self.bpd_atol,
      t_start=t_start,
    )
    return {'bpd': bpd, 'bpd_nfe': nfe}
