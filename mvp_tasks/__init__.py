"""mvp-studio deploy tooling: ship every app of the monorepo to AWS ECS Fargate.

The root collection and every `mvp.*` config default live here, so `invoke.yaml`, `-f FILE` and
`INVOKE_MVP_*` environment variables layer over them. Importing this module must stay cheap:
boto3, rich and moto are imported only when a task runs.
"""

from invoke import Collection

from .defaults import DEFAULTS
from .tasks import app, ci, cluster, fleet, project, sandbox, secret

ns = Collection()
ns.add_collection(Collection.from_module(cluster), name="cluster")
apps = Collection.from_module(app)
apps.add_collection(Collection.from_module(secret), name="secret")
ns.add_collection(apps, name="app")
ns.add_collection(Collection.from_module(ci), name="ci")
ns.add_collection(Collection.from_module(fleet), name="fleet")
ns.add_collection(Collection.from_module(project), name="project")
ns.add_collection(Collection.from_module(sandbox), name="sandbox")
ns.configure({"mvp": DEFAULTS})
