"""Getting firmware onto disk: resumable verified download (`download`), safe unpacking
(`archive`), the `romkit fetch` orchestration (`service`) and a fault-injecting local HTTP
server (`localserver`) used by tests, the demo and the benches."""
