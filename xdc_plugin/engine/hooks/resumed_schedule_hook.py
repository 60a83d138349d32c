"""Resume with the schedule of this run's config, not the checkpoint's."""
import copy
import warnings

from mmengine.hooks import Hook
from mmengine.runner import Runner

from xdc_plugin.registry import HOOKS

# What a scheduler's state holds beyond its definition: where it is.
_PROGRESS = ('last_step', '_global_step', '_last_value', 'base_values',
             'verbose')


class ScheduleMismatchError(ValueError):
    """The checkpoint cannot continue under this run's schedule."""


def _definition(scheduler_state):
    return {k: v for k, v in scheduler_state.items() if k not in _PROGRESS}


def _describe_changes(old, new, names):
    """``'CosineAnnealingLR end 4 -> 6, ...'`` for definitions ``old`` and
    ``new`` (lists of dicts) of schedulers named ``names``."""
    if len(old) != len(new):
        return f'{len(old)} schedulers -> {len(new)}'
    changes = []
    for name, before, after in zip(names, old, new):
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                changes.append(f'{name} {key} {before.get(key)} -> '
                               f'{after.get(key)}')
    return ', '.join(changes)


@HOOKS.register_module()
class ResumedScheduleHook(Hook):
    """mmengine restores a parameter scheduler's whole state on resume, its
    definition included: ``end`` (which defaults to the ``max_epochs`` the
    schedule was built with), ``T_max``, ``milestones``... A run resumed
    with a longer ``max_epochs`` would keep the old ``end``, and the
    learning rate would stay at its last value for the added epochs.

    When the checkpoint's schedule differs from the one this run's config
    builds, this hook rebuilds the config's schedulers and steps them to the
    checkpoint's position (its epochs and iterations, as
    ``ParamSchedulerHook`` steps them), which gives the values that an
    uninterrupted run of this config has there, and logs the change. It
    stops, saying why, when the checkpoint lies past this run's
    ``max_epochs`` or its position does not fit this run's epoch length
    (stepping to it would give other values). A changed ``max_epochs``
    with an unchanged schedule (``end`` and ``T_max`` set in the config) is
    logged. Each checkpoint records ``max_epochs`` in its meta.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._configured = None
        self._saved_max_epochs = None

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint['meta']['max_epochs'] = runner.max_epochs

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        # mmengine loads the schedulers' states after this hook, into the
        # schedulers built from this run's config: record those.
        if isinstance(runner.param_schedulers, list):
            self._configured = [_definition(s.state_dict())
                                for s in runner.param_schedulers]
        self._saved_max_epochs = checkpoint.get('meta', {}).get('max_epochs')

    def before_train(self, runner: Runner) -> None:
        configured, self._configured = self._configured, None
        # Not resumed: nothing loaded, or load_from (the loop is at 0); or
        # several optimizers (mmengine's way).
        if configured is None or runner.iter == 0:
            return
        if runner.epoch > runner.max_epochs:
            raise ScheduleMismatchError(
                f'the checkpoint is at epoch {runner.epoch}, past '
                f'max_epochs={runner.max_epochs} of this run: nothing to '
                f'train. Resume with max_epochs >= {runner.epoch}.')
        resumed = [_definition(s.state_dict())
                   for s in runner.param_schedulers]
        lengths = ''
        if self._saved_max_epochs not in (None, runner.max_epochs):
            lengths = f'max_epochs {self._saved_max_epochs} -> ' \
                f'{runner.max_epochs}'
        if resumed == configured:
            if lengths:  # the user may expect the schedule to follow
                runner.logger.warning(
                    f'Resumed with {lengths}; the schedule is unchanged (its '
                    'end is set in the config).')
            return
        names = [type(s).__name__ for s in runner.param_schedulers]
        change = ', '.join(filter(None, [
            lengths, _describe_changes(resumed, configured, names)]))
        lr_before = self._lrs(runner)
        self._rebuild(runner)
        runner.logger.warning(
            f'Resumed with another schedule than the checkpoint\'s '
            f'({change}): rebuilt this config\'s schedule at epoch '
            f'{runner.epoch}, iteration {runner.iter} (lr {lr_before} -> '
            f'{self._lrs(runner)}).')

    @staticmethod
    def _lrs(runner):
        return ', '.join(f'{lr:.4e}' for lr in runner.optim_wrapper.get_lr()
                         ['lr'])

    def _rebuild(self, runner):
        """This config's schedulers, stepped to the resumed position."""
        epoch_length = len(runner.train_dataloader)
        within = runner.iter - runner.epoch * epoch_length
        if not 0 <= within < epoch_length:
            raise ScheduleMismatchError(
                f'the checkpoint is at iteration {runner.iter} after '
                f'{runner.epoch} epochs, which does not fit this run\'s '
                f'{epoch_length} iterations per epoch: its schedule cannot '
                'be rebuilt. Resume with the dataset and batch size it was '
                'trained with.')
        if runner.cfg.get('param_scheduler') is None:
            raise ScheduleMismatchError(
                'the schedule differs from the checkpoint\'s and this runner '
                'has no param_scheduler config to rebuild it from (build it '
                'with Runner.from_cfg)')
        # The schedulers start from the optimizer's initial values, as
        # when the uninterrupted run built them.
        param_names = {s.param_name for s in runner.param_schedulers}
        for group in runner.optim_wrapper.param_groups:
            for name in param_names:
                group[name] = group[f'initial_{name}']
        with warnings.catch_warnings():
            # "scheduler.step() before optimizer.step()": we replay.
            warnings.simplefilter('ignore', UserWarning)
            schedulers = runner.build_param_scheduler(
                copy.deepcopy(runner.cfg.param_scheduler))
            per_iter = [s for s in schedulers if not s.by_epoch]
            per_epoch = [s for s in schedulers if s.by_epoch]
            for _ in range(runner.epoch):
                for _ in range(epoch_length):
                    for scheduler in per_iter:
                        scheduler.step()
                for scheduler in per_epoch:
                    scheduler.step()
            for _ in range(within):
                for scheduler in per_iter:
                    scheduler.step()
        runner.param_schedulers = schedulers
