"""The ``l2l_maml`` peer: learn2learn's ``MAML`` wrapper, used as its examples use it
(``examples/vision/maml_omniglot.py``): per task ``clone()``, K × ``adapt(support loss)``,
``backward()`` of the query loss; then the accumulated gradients are divided by M.

The network is learn2learn's own ``CNN4(max_pool=True)``: the Conv4 of ``conv4.py`` with
learn2learn's initialisation and module layout (each block registers its batch norm before its
convolution). It keeps batch-norm running averages as a side effect; its forward in training
mode normalises with the batch's statistics, as ``conv4.conv4`` does.

``import learn2learn`` imports torchvision for its dataset and transform modules. PyPI's
torchvision wheels are CUDA builds that fail to load beside a ``+cpu`` torch, and nothing timed
here uses them, so when torchvision cannot be imported, ``import_learn2learn`` answers every
``torchvision`` import with an empty placeholder package (the run's JSON then says
``"torchvision_placeholder": true``).
"""
import contextlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import List, Tuple

from benchmarks.peers import require_torch

require_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.peers.conv4 import Params  # noqa: E402
from benchmarks.peers.data import MetaBatch  # noqa: E402


class _PlaceholderModule(types.ModuleType):
    """A package whose every public attribute is a new do-nothing class (enough for the
    ``from torchvision.transforms import Compose`` and subclassing that learn2learn does)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = type(name, (), {"__init__": lambda self, *args, **kwargs: None})
        setattr(self, name, placeholder)
        return placeholder


class _TorchvisionPlaceholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``torchvision`` and every ``torchvision.*`` as a ``_PlaceholderModule``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == "torchvision":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _PlaceholderModule(spec.name)
        module.__path__, module.__version__ = [], "0+placeholder"
        return module

    def exec_module(self, module):
        pass


def import_learn2learn() -> Tuple[types.ModuleType, bool]:
    """(learn2learn, whether torchvision is a placeholder)."""
    try:
        import torchvision  # noqa: F401
        placeholder = False
    except Exception:   # absent, or a CUDA build that fails to load
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        sys.meta_path.insert(0, _TorchvisionPlaceholders())
        placeholder = True
    try:
        with contextlib.redirect_stdout(sys.stderr):   # gym prints a banner on import
            import learn2learn
    except ImportError as error:
        raise ImportError(f"l2l_maml needs learn2learn 0.2.0 ({error}); "
                          "build the peers' environment with benchmarks/setup_peers.sh") from error
    return learn2learn, placeholder


class Learn2LearnMAML:
    """``l2l.algorithms.MAML`` around learn2learn's ``CNN4(ways, max_pool=True)`` on 1x28x28
    images (``hidden`` filters per conv, 64 in the benchmark), its weights on ``device``."""

    name = "l2l_maml"

    def __init__(self, ways: int, inner_lr: float, inner_steps: int, first_order: bool = False,
                 hidden: int = 64, device: str = "cpu"):
        l2l, self.torchvision_placeholder = import_learn2learn()
        self.version = l2l.__version__
        self.model = l2l.vision.models.CNN4(ways, hidden_size=hidden, layers=4, channels=1,
                                            max_pool=True, embedding_size=hidden).to(device)
        self.maml = l2l.algorithms.MAML(self.model, lr=inner_lr, first_order=first_order)
        self.inner_steps = inner_steps

    def parameters(self) -> List[torch.Tensor]:
        return list(self.maml.parameters())

    def named_layers(self):
        """(``conv4.init_params`` name prefix, module) of each conv, batch norm and the head."""
        modules = list(self.model.features.modules())
        convs = [m for m in modules if isinstance(m, torch.nn.Conv2d)]
        norms = [m for m in modules if isinstance(m, torch.nn.BatchNorm2d)]
        for b, (conv, norm) in enumerate(zip(convs, norms, strict=True)):
            yield f"block{b}.conv", conv
            yield f"block{b}.norm", norm
        yield "head", self.model.classifier

    def load_conv4(self, params: Params) -> None:
        """Copy ``conv4.init_params``-style weights into the model (to compare with TorchMAML)."""
        with torch.no_grad():
            for prefix, module in self.named_layers():
                module.weight.copy_(params[f"{prefix}.weight"])
                module.bias.copy_(params[f"{prefix}.bias"])

    def conv4_grads(self) -> Params:
        """The ``.grad`` of every weight, under ``conv4.init_params``'s names."""
        return {f"{prefix}.{kind}": getattr(module, kind).grad
                for prefix, module in self.named_layers() for kind in ("weight", "bias")}

    def meta_gradient(self, batch: MetaBatch) -> Tuple[float, float]:
        """Accumulate the mean over tasks of d(query loss)/dθ in ``.grad``; (meta-loss, NLL)."""
        total = 0.0
        for i in range(batch.tasks):
            task = batch.task(i)
            learner = self.maml.clone()
            for _ in range(self.inner_steps):
                learner.adapt(F.cross_entropy(learner(task.support_x), task.support_y))
            loss = F.cross_entropy(learner(task.query_x), task.query_y)
            loss.backward()
            total += loss.item()
        for p in self.maml.parameters():
            p.grad.mul_(1.0 / batch.tasks)
        return total / batch.tasks, total / batch.tasks
