"""Test configuration: two CPU host devices, so sharding is exercised on any machine.

This must run before JAX starts its backend, which is why it lives here.
"""

import jax

jax.config.update("jax_num_cpu_devices", 2)
