"""Speed and memory of mtcp models, measured the same way on a CPU and on a GPU.

The package's modules, each one job (the names below are re-exported here):

- :mod:`~mtcp.benchmark.model`: :class:`BenchmarkConfig` and :func:`run_benchmark`
  (parameters, GFLOPs, training and inference images/s and peak memory of a registered
  model), with the random batch and the step closures it times;
- :mod:`~mtcp.benchmark.timing`: the measuring tools (:class:`PeakMemory`, :func:`time_runs`,
  FLOP, parameter and host-sync counts);
- :mod:`~mtcp.benchmark.attention`: the CFM attention alone and the matmul rate;
- :mod:`~mtcp.benchmark.machine`: the machine's description (:func:`machine_info`) and the
  thread count;
- :mod:`~mtcp.benchmark.table`: results as Markdown (:func:`format_markdown`);
- :mod:`~mtcp.benchmark.precision`: fp32 / bf16 / int8 compared on a trained checkpoint
  (imported on its own: it runs each case in a fresh process).
"""

from __future__ import annotations

from mtcp.benchmark.attention import attention_benchmark, matmul_tflops
from mtcp.benchmark.machine import GIB, cpu_model, machine_info, machine_lines, num_threads
from mtcp.benchmark.model import (
    DEVICES,
    NYUD_TASKS,
    PHASES,
    PRECISIONS,
    BenchmarkConfig,
    make_inference,
    make_train_step,
    random_batch,
    run_benchmark,
)
from mtcp.benchmark.table import RESULT_COLUMNS, format_markdown, markdown_table, result_row
from mtcp.benchmark.timing import (
    PeakMemory,
    count_host_syncs,
    count_parameters,
    counted_gflops,
    forward_gflops,
    summarise_runs,
    time_runs,
)

__all__ = [
    "DEVICES",
    "GIB",
    "NYUD_TASKS",
    "PHASES",
    "PRECISIONS",
    "RESULT_COLUMNS",
    "BenchmarkConfig",
    "PeakMemory",
    "attention_benchmark",
    "count_host_syncs",
    "count_parameters",
    "counted_gflops",
    "cpu_model",
    "format_markdown",
    "forward_gflops",
    "machine_info",
    "machine_lines",
    "make_inference",
    "make_train_step",
    "markdown_table",
    "matmul_tflops",
    "num_threads",
    "random_batch",
    "result_row",
    "run_benchmark",
    "summarise_runs",
    "time_runs",
]
