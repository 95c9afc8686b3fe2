"""storyq core: settings, models, the Redis dispatch queue, the Postgres store and generators.

Shipped to both Lambda functions as a layer. It never imports a function package.
"""

__version__ = "0.1.0"
