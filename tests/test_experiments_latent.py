"""The autoencoder (AE, VAE, VQ-VAE) and latent-diffusion experiment files: the checks of
tests/test_experiments.py, in a file of their own so that `--dist loadfile` runs them beside
that one."""

import pytest

from tests.test_experiments import LATENT, check_smoke_variant, check_traced_smoke_variant

# ldm_digits trains through gen.main as its docstring says in tests/test_latent_diffusion.py (and
# ldm_cond_digits differs from it only by ddpm_cond_digits's guidance, tested in
# test_guidance.py); ae_digits's objective is tested in tests/test_autoencoders.py: these are
# built and traced here.
TRACED = ('ae_digits', 'ldm_digits', 'ldm_cond_digits')
FAST_SMOKE = ('vae_ring8',)


@pytest.mark.parametrize(
  'name',
  [
    pytest.param(e, marks=() if e in FAST_SMOKE else pytest.mark.slow)
    for e in LATENT
    if e not in TRACED
  ],
)
def test_smoke_variant_trains_and_samples(name, tmp_path, tfds_dir, pretrained_runs):
  check_smoke_variant(name, tmp_path, tfds_dir, pretrained_runs)


@pytest.mark.slow
@pytest.mark.parametrize('name', TRACED)
def test_traced_smoke_variant_builds_steps_and_samples(name, tfds_dir, pretrained_runs):
  check_traced_smoke_variant(name, tfds_dir, pretrained_runs)


def test_every_latent_experiment_is_checked_here():
  assert set(LATENT) == {
    'ae_digits',
    'vae_digits',
    'vae_ldm_digits',
    'vae_ring8',
    'vqvae_digits',
    'ldm_digits',
    'ldm_cond_digits',
  }
