"""The run monitor: charts, progress line, eval timeline."""
