"""The autoencoder family's numerics against independent references: the VAE's KL and decoder
likelihoods (closed forms, scipy), its ELBO and IWAE bounds on a linear-Gaussian model whose
log p(x) and posterior are known exactly, the VQ-VAE's quantiser, straight-through gradient,
EMA codebook and restarts (hand computations), and every objective's encode/decode round trip."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate
import scipy.stats

from experiments import ae_common, base
from gen import objectives
from gen.data import DatasetSpec
from gen.errors import ConfigError
from gen.models import autoencoder as ae_models
from gen.objectives import vae as vae_lib
from gen.objectives import vqvae as vq_lib
from gen.objectives.autoencoder import NET

DIGITS = DatasetSpec(name='digits', kind='images', shape=(8, 8, 1), num_classes=10, num_train=1500)


def _digits_objective(name: str, **fields):
  config = base.get_config(objective=name, model='conv_autoencoder')
  ae_common.digits_autoencoder(config, latent_channels=2, num_steps=10)
  config.model.conv_autoencoder.ch = 8
  config.model.conv_autoencoder.num_groups = 4
  for dotted, value in fields.items():
    section, leaf = dotted.split('.')
    config[section][leaf] = value
  return objectives.make(config, DIGITS)


RING = DatasetSpec(name='ring8', kind='points', shape=(2,), num_classes=0, num_train=100_000)


def _ring_vqvae(num_codes):
  """A VQ-VAE of 2-D points with 2-D codes: MLPs compile in a second, convolutions in ten."""
  config = base.get_config(objective='vqvae', model='mlp_autoencoder')
  config.model.mlp_autoencoder.features = (32, 32)
  config.model.mlp_autoencoder.latent_dim = 2
  config.vqvae.num_codes = num_codes
  return objectives.make(config, RING)


def _digit_batch(n=8, seed=0):
  levels = jax.random.randint(jax.random.key(seed), (n, 8, 8, 1), 0, 17)
  return {'x': levels / 8.0 - 1.0, 'label': jnp.zeros((n,), jnp.int32)}


# -- the VAE's KL and decoder likelihoods ----------------------------------------------------


def test_gaussian_kl_equals_the_closed_form_of_two_gaussians():
  rng = np.random.default_rng(0)
  mean, logvar = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
  got = np.asarray(vae_lib.gaussian_kl(jnp.asarray(mean), jnp.asarray(logvar)))
  for i in range(3):  # KL(N(m, S) || N(0, I)) = (tr S + m'm - k - log det S) / 2, full matrices
    cov = np.diag(np.exp(logvar[i]))
    ref = 0.5 * (np.trace(cov) + mean[i] @ mean[i] - 5 - np.linalg.slogdet(cov)[1])
    np.testing.assert_allclose(got[i], ref, rtol=1e-5)
  # and one dimension by quadrature of q log(q / p)
  m, s = 0.7, 0.4
  q = scipy.stats.norm(m, s)
  integral, _ = scipy.integrate.quad(
    lambda z: q.pdf(z) * (q.logpdf(z) - scipy.stats.norm.logpdf(z)), -10, 10
  )
  one = vae_lib.gaussian_kl(jnp.asarray([[m]]), jnp.asarray([[2 * math.log(s)]]))
  np.testing.assert_allclose(float(one[0]), integral, rtol=1e-5)


def test_decoder_densities_equal_scipy():
  rng = np.random.default_rng(1)
  x, out = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
  log_s = np.float32(-0.3)
  for kind, dist in (('gaussian', scipy.stats.norm), ('logistic', scipy.stats.logistic)):
    got = vae_lib.decoder_log_prob(kind, jnp.asarray(out), jnp.asarray(log_s), jnp.asarray(x))
    ref = dist.logpdf(x, loc=out, scale=np.exp(log_s)).sum(-1)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)
  b = rng.integers(0, 2, size=(4, 6)) * 2.0 - 1.0  # binary data in {-1, 1}
  got = vae_lib.decoder_log_prob('bernoulli', jnp.asarray(out), 0.0, jnp.asarray(b))
  p = 1 / (1 + np.exp(-out))
  ref = np.where(b > 0, np.log(p), np.log(1 - p)).sum(-1)
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)


@pytest.mark.parametrize('kind', ['gaussian', 'logistic'])
def test_discretised_decoder_is_a_distribution_over_the_levels(kind):
  """Over the 17 levels of [-1, 1], the bin probabilities sum to 1 for any location and
  scale, and a middle bin's equals the CDF difference scipy computes."""
  levels = jnp.linspace(-1.0, 1.0, 17)[:, None]  # [17 levels, 1 dim]
  dist = scipy.stats.norm if kind == 'gaussian' else scipy.stats.logistic
  for loc, log_s in ((0.1, -1.0), (-0.9, -2.5), (0.95, 0.5), (0.3, -4.0)):
    out = jnp.full_like(levels, loc)
    lp = vae_lib.decoder_log_prob(kind, out, jnp.asarray(log_s), levels, num_bins=17)
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(lp))), 1.0, atol=2e-5)
    s, h = math.exp(log_s), 1 / 16
    ref = dist.cdf(0.0 + h, loc, s) - dist.cdf(0.0 - h, loc, s)  # level 8 is x = 0
    if ref > 1e-4:
      np.testing.assert_allclose(math.exp(float(lp[8])), ref, rtol=1e-4)


# -- ELBO and IWAE on a linear-Gaussian VAE with a known log p(x) -------------------------------

D, K_LATENT, SIGMA = 3, 2, 0.5
KERNEL = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])  # decoder x = z K + b, K K' diagonal
BIAS = np.array([0.2, -0.1, 0.3])


def _linear_vae(num_importance):
  encoder = ae_models.MLPEncoder(2 * K_LATENT, ())
  decoder = ae_models.MLPDecoder(D, ())
  tx = optax.sgd(0.0)
  return vae_lib.VAE(
    encoder=encoder,
    decoder=decoder,
    tx=tx,
    lr_fn=optax.constant_schedule(0.0),
    ema_rate=0.0,
    ema_warmup=0.0,
    shape=(D,),
    latent_shape=(K_LATENT,),
    decoder_std=SIGMA,
    num_importance=num_importance,
  )


def _exact_posterior_state(vae, var_factor=1.0):
  """The state whose encoder is the exact posterior p(z|x) = N(A (x - b), Sigma) (its variance
  times `var_factor`) and whose decoder is x = z K + b, sigma = SIGMA."""
  precision = np.eye(K_LATENT) + KERNEL @ KERNEL.T / SIGMA**2
  cov = np.linalg.inv(precision)
  a = cov @ KERNEL / SIGMA**2  # [latent, D]: mean = a (x - b)
  enc_kernel = np.concatenate([a.T, np.zeros((D, K_LATENT))], axis=1)
  enc_bias = np.concatenate([-a @ BIAS, np.log(np.diag(cov) * var_factor)])
  state = vae.init(jax.random.key(0), {'x': jnp.zeros((4, D))})
  params = {
    'encoder': {'Dense_0': {'kernel': jnp.asarray(enc_kernel), 'bias': jnp.asarray(enc_bias)}},
    'decoder': {'Dense_0': {'kernel': jnp.asarray(KERNEL), 'bias': jnp.asarray(BIAS)}},
  }
  chex.assert_trees_all_equal_shapes(params, state.params[NET])
  return state.replace(ema_params={NET: params}, params={NET: params}), cov


def _log_px(x):
  cov = KERNEL.T @ KERNEL + SIGMA**2 * np.eye(D)
  return scipy.stats.multivariate_normal(BIAS, cov).logpdf(x)


def test_elbo_and_iwae_equal_log_px_under_the_exact_posterior():
  vae = _linear_vae(num_importance=64)
  state, _ = _exact_posterior_state(vae)
  x = np.random.default_rng(2).normal(size=(16, D))
  out = jax.jit(lambda s, xx, k: vae.bits_per_dim(s, xx, k))(
    state, jnp.asarray(x), jax.random.key(3)
  )
  ref = -np.mean(_log_px(x)) / (D * math.log(2))
  # w_i = p(x) for every draw: IWAE is exact; the ELBO's reconstruction term is a 64-draw mean
  np.testing.assert_allclose(float(out['bpd']), ref, rtol=1e-5)
  np.testing.assert_allclose(float(out['bpd_elbo']), ref, atol=0.02)
  assert int(out['bpd_nfe']) == 64


def test_elbo_is_log_px_minus_the_posterior_kl_and_iwae_closes_the_gap():
  """With the posterior variance doubled: ELBO = log p(x) - KL(q || p(z|x)) (closed form, to
  Monte-Carlo error), the training loss averaged over draws is -ELBO / D, and IWAE_k lies
  between them, nearer log p(x) as k grows."""
  x = np.random.default_rng(4).normal(size=(32, D))
  log_px = _log_px(x)
  results = {}
  for k in (1, 8, 512):
    vae = _linear_vae(num_importance=k)
    state, cov = _exact_posterior_state(vae, var_factor=2.0)
    fn = jax.jit(lambda s, xx, kk, vae=vae: vae.bits_per_dim(s, xx, kk))
    results[k] = fn(state, jnp.asarray(x), jax.random.key(5))
  # KL(N(m, 2 S) || N(m, S)) per example, S diagonal: (k (2 - 1 - log 2)) / 2
  gap = 0.5 * K_LATENT * (2.0 - 1.0 - math.log(2.0))
  to_bpd = lambda nats: -nats / (D * math.log(2))
  np.testing.assert_allclose(
    float(results[512]['bpd_elbo']), to_bpd(np.mean(log_px) - gap), atol=0.01
  )
  iwae = [float(results[k]['bpd']) for k in (1, 8, 512)]
  exact = to_bpd(np.mean(log_px))
  # E[IWAE_k] <= log p(x); one estimate of it may exceed log p(x) by its Monte-Carlo error
  assert exact - 0.005 < iwae[2] < iwae[1] < iwae[0], (exact, iwae)
  assert abs(iwae[2] - exact) < 0.05 * (iwae[0] - exact)
  # the training loss (one reparameterised draw) is an unbiased estimate of -ELBO / D (nats)
  vae = _linear_vae(num_importance=1)
  state, _ = _exact_posterior_state(vae, var_factor=2.0)
  keys = jax.random.split(jax.random.key(6), 400)
  losses = jax.vmap(lambda kk: vae.loss(state.params[NET], jnp.asarray(x), kk, 1.0, False)[0])(keys)
  np.testing.assert_allclose(float(jnp.mean(losses)), -(np.mean(log_px) - gap) / D, atol=0.01)


def test_the_kl_weight_warms_up_linearly():
  vae = _linear_vae(1)
  warm = vae_lib.VAE(**{**vae.__dict__, 'beta': 0.5, 'kl_warmup_steps': 100})
  np.testing.assert_allclose(
    [float(warm.beta_at(s)) for s in (0, 49, 99, 500)], [0.005, 0.25, 0.5, 0.5]
  )
  assert float(vae.beta_at(0)) == 1.0


# -- the VQ-VAE's quantiser, straight-through gradient and codebook ---------------------------


def test_nearest_code_and_perplexity_against_brute_force():
  rng = np.random.default_rng(7)
  z, codebook = rng.normal(size=(50, 3)), rng.normal(size=(6, 3))
  got = np.asarray(vq_lib.nearest_code(jnp.asarray(z), jnp.asarray(codebook)))
  ref = np.argmin(((z[:, None, :] - codebook[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_array_equal(got, ref)
  assert float(vq_lib.perplexity(jnp.full((8,), 3.0))) == pytest.approx(8.0)
  assert float(vq_lib.perplexity(jnp.asarray([0.0, 5.0, 0.0]))) == pytest.approx(1.0)
  p = np.array([0.5, 0.25, 0.25])
  assert float(vq_lib.perplexity(jnp.asarray(p * 4))) == pytest.approx(
    np.exp(-(p * np.log(p)).sum())
  )


def test_straight_through_gradient_is_the_gradient_at_the_code():
  """d/dz f(quantise(z)) = f'(e_k): the value is the nearest code, the Jacobian the identity."""
  codebook = jnp.asarray([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
  z = jnp.asarray([[0.9, 1.2], [-0.2, 0.1], [-0.8, 1.7]])
  c = jnp.asarray([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]])
  f = lambda zz: jnp.sum(c * vq_lib.quantise(zz, codebook)[0] ** 2)
  z_q, codes = vq_lib.quantise(z, codebook)
  np.testing.assert_array_equal(np.asarray(codes), [1, 0, 2])
  np.testing.assert_array_equal(np.asarray(z_q), np.asarray(codebook)[[1, 0, 2]])
  grad = jax.grad(f)(z)
  np.testing.assert_allclose(np.asarray(grad), 2 * np.asarray(c) * np.asarray(codebook)[[1, 0, 2]])


def test_ema_codebook_update_equals_a_hand_computation():
  cluster_size = np.array([2.0, 1.0, 0.5])
  embed_sum = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
  z = np.array([[1.0, 1.0], [3.0, 1.0], [0.0, 2.0], [1.0, -1.0]])
  codes = np.array([0, 0, 1, 0])  # code 2 unused
  decay, eps = 0.9, 1e-5
  # by hand: n = (3, 1, 0), sums = ((5, 1), (0, 2), (0, 0))
  n_ref = decay * cluster_size + 0.1 * np.array([3.0, 1.0, 0.0])
  m_ref = decay * embed_sum + 0.1 * np.array([[5.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
  total = n_ref.sum()
  smoothed = (n_ref + eps) / (total + 3 * eps) * total
  got = vq_lib.ema_codebook(
    jnp.asarray(cluster_size), jnp.asarray(embed_sum), jnp.asarray(z), jnp.asarray(codes), decay
  )
  np.testing.assert_allclose(np.asarray(got[1]), n_ref, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(got[2]), m_ref, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(got[0]), m_ref / smoothed[:, None], rtol=1e-5)


def test_the_ema_codebook_gets_no_gradient_and_dead_codes_restart_at_batch_encodings():
  vq = _ring_vqvae(num_codes=16)
  batch = {'x': jax.random.normal(jax.random.key(0), (64, 2))}
  state = vq.init(jax.random.key(0), batch)
  step = jax.jit(vq.step)
  state, metrics = step(state, batch, jax.random.key(1))
  state = state.replace(step=state.step + 1)
  # step 0 set every code to one of its batch's encodings
  encodings = np.asarray(vq.encode(state.params[NET], batch['x']))
  grads = jax.jit(jax.grad(lambda p: vq.loss_of(p, batch['x'], jax.random.key(2))[0]))(
    state.params[NET]
  )
  assert not np.any(np.asarray(grads['codebook']))  # EMA codebook: the loss has no codebook term
  # code 3 is far from every encoding and long unused: restarted at one of this batch's
  # encodings, its usage back to 1/K
  far = {**state.params[NET], 'codebook': state.params[NET]['codebook'].at[3].set(100.0)}
  state = state.replace(
    params={NET: far}, extra={**state.extra, 'usage': state.extra['usage'].at[3].set(1e-6)}
  )
  params_before = state.params[NET]
  new, metrics = step(state, batch, jax.random.key(3))
  assert int(metrics['codebook_restarts']) == 1
  encodings = np.asarray(vq.encode(params_before, batch['x']))
  code = np.asarray(new.params[NET]['codebook'][3])
  assert np.min(np.abs(encodings - code).sum(-1)) < 1e-5, code
  assert float(new.extra['usage'][3]) == pytest.approx(1 / 16)
  # the EMA statistics of the restarted code start at its new value: e = m / N
  size = float(new.extra['cluster_size'][3])
  np.testing.assert_allclose(np.asarray(new.extra['embed_sum'][3]) / size, code, rtol=1e-5)
  assert 1.0 <= float(metrics['codebook_perplexity']) <= 16.0


# -- every objective of the family: shapes, round trips, config errors --------------------------


@pytest.mark.slow  # compiles three conv pairs' encoders and decoders: ~30 s on 2 cores
class RoundTripTest(chex.TestCase):
  """encode_latent -> latent_shape, decode_latent -> data in [-1, 1], with and without jit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_encode_decode_round_trip_for_every_objective(self):
    batch = _digit_batch(4)
    for name in ('autoencoder', 'vae', 'vqvae'):
      objective = _digits_objective(name)
      params = objective.params_of(objective.init(jax.random.key(0), batch))
      z = self.variant(objective.encode_latent)(params, batch['x'])
      chex.assert_shape(z, (4, 4, 4, 2))
      x_hat = self.variant(objective.decode_latent)(params, z)
      chex.assert_shape(x_hat, (4, 8, 8, 1))
      assert float(jnp.max(jnp.abs(x_hat))) <= 1.0
      chex.assert_trees_all_close(objective.reconstruct(params, batch['x']), x_hat, atol=1e-6)
      if name == 'vqvae':  # quantised latents are codes, and decode_latent quantises first
        chex.assert_trees_all_equal(objective.snap(params, z), z)


def test_config_errors_name_the_field():
  for fields, message in (
    ({'vae.decoder': 'poisson'}, "vae.decoder='poisson' is unknown"),
    ({'vae.beta': -1.0}, 'vae.beta must be >= 0'),
  ):
    with pytest.raises(ConfigError, match=message):
      _digits_objective('vae', **fields)
  with pytest.raises(ConfigError, match="vae.decoder='bernoulli' is a likelihood of binary data"):
    _digits_objective('vae', **{'vae.decoder': 'bernoulli'})
  with pytest.raises(ConfigError, match="vqvae.codebook='kmeans' is unknown"):
    _digits_objective('vqvae', **{'vqvae.codebook': 'kmeans'})
  with pytest.raises(ConfigError, match='vqvae.num_codes must be >= 2'):
    _digits_objective('vqvae', **{'vqvae.num_codes': 1})
  with pytest.raises(ConfigError, match="autoencoder.loss='huber' is unknown"):
    _digits_objective('autoencoder', **{'autoencoder.loss': 'huber'})
  config = base.get_config(objective='vae')  # model 'mlp' is a denoiser
  with pytest.raises(ConfigError, match="objective.name='vae' takes one of"):
    objectives.make(config, DIGITS)


def test_the_autoencoder_prior_is_fitted_to_the_first_batch_latents():
  config = base.get_config(objective='autoencoder', model='mlp_autoencoder')
  config.model.mlp_autoencoder.features = (32, 32)
  ae = objectives.make(config, RING)
  batch = {'x': jax.random.normal(jax.random.key(0), (64, 2))}
  state = ae.init(jax.random.key(0), batch)
  z = ae.encode(state.params[NET], batch['x'])
  new, _ = jax.jit(ae.step)(state, batch, jax.random.key(1))
  chex.assert_trees_all_close(new.extra['latent_mean'], jnp.mean(z, 0), atol=1e-6)
  chex.assert_trees_all_close(new.extra['latent_var'], jnp.var(z, 0), atol=1e-6)
  chex.assert_trees_all_equal(new.extra['picture_x'], batch['x'][:8])
