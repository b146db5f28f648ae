"""How the service runs on the machine: the serving plan (processes, threads, batching) resolved
once at start-up (`plan.py`), the uvicorn server and the supervisor of worker processes
(`server.py`), each process's set-up (logs in `logs.py`, allocator in `memory.py`), the threads
that run CPU work off the event loop (`threads.py`) and the load the worker processes share
(`peers.py`)."""
