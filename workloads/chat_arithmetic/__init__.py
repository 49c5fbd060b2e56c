from workloads.chat_arithmetic.workload import ChatArithmeticWorkload

__all__ = ["ChatArithmeticWorkload"]
