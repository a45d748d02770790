"""gen.main turns JAX's persistent compilation cache on by default, and where it points."""

import os

import jax
import pytest

from gen import main


@pytest.fixture
def restore_cache_config():
  keys = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs')
  before = {k: getattr(jax.config, k) for k in keys}
  yield
  for k, v in before.items():
    jax.config.update(k, v)


@pytest.mark.parametrize(
  'flag,env,expected',
  [
    ('', None, 'runs/.jax_cache'),  # default: next to the workdir
    ('', 'shared/cache', 'shared/cache'),  # $JAX_COMPILATION_CACHE_DIR wins over the default
    ('mine', 'shared/cache', 'mine'),  # --compilation_cache wins over both
  ],
)
def test_cache_folder(flag, env, expected, tmp_path, monkeypatch, restore_cache_config):
  monkeypatch.chdir(tmp_path)
  if env is None:
    monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  else:
    monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', env)
  main.enable_compilation_cache('runs/run1', flag)
  folder = jax.config.jax_compilation_cache_dir
  assert os.path.abspath(folder) == str(tmp_path / expected)


def test_none_turns_it_off(restore_cache_config):
  before = jax.config.jax_compilation_cache_dir
  main.enable_compilation_cache('runs/run1', 'none')
  assert jax.config.jax_compilation_cache_dir == before
