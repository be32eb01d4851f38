namespace Vessel.IntegrationTests.Shim;

/// <summary>containerd-shim-vessel-v1 driven by ctr against a private containerd, with real VMs (TCG here).</summary>
[Collection(ShimCollection.Name)]
public sealed class ShimTests(ShimFixture ctrd) : TimedTestBase(ShimFixture.TestTimeout)
{
    [ShimFact]
    public async Task Ctr_run_rm_prints_the_image_file_and_exits_3_on_the_guest_kernel_and_leaves_nothing()
    {
        ProcessResult run = await ctrd.CtrAsync(Deadline, "run", "--rm", "--runtime", ShimFixture.Runtime, ShimFixture.Image, "t1",
            "sh", "-c", "cat /etc/vessel-test-release; uname -r; hostname; echo to-stderr >&2; exit 3");
        ShimFixture.AssertExit(run, 3);
        string[] lines = run.StandardOutput.Split('\n');
        Assert.Equal(TestImages.BusyboxRelease.TrimEnd('\n'), lines[0]);
        // The guest kernel (the kit's), not the host's.
        Assert.Equal("linux-image-" + lines[1], ctrd.Kit!.Manifest.KernelPackage);
        Assert.NotEqual((await ExternalProcess.RunAsync("uname", ["-r"], Deadline)).StandardOutput.Trim(), lines[1]);
        Assert.Equal("t1", lines[2]);
        Assert.Contains("to-stderr", run.StandardError, StringComparison.Ordinal);
        await ctrd.AssertNothingLeftAsync("t1", Deadline);
    }

    [ShimFact]
    public async Task Stdin_reaches_the_container_through_its_fifo()
    {
        ProcessResult run = await ctrd.CtrWithInputAsync("line one\nline two\n", Deadline, "run", "--rm", "--runtime", ShimFixture.Runtime, ShimFixture.Image, "t3",
            "sh", "-c", "wc -l; echo end");
        ShimFixture.AssertExit(run, 0);
        Assert.Equal(["2", "end"], run.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()));
        await ctrd.AssertNothingLeftAsync("t3", Deadline);
    }

    [ShimFact]
    public async Task Exec_ps_and_kill_act_on_a_detached_task_with_events_in_order_and_rm_leaves_nothing()
    {
        using var events = EventsRecorder.Start(ctrd);
        await ctrd.WithDetachedTaskAsync("t2", [ShimFixture.Image, "t2", "sleep", "1d"], async () =>
        {
            ProcessResult exec = await ctrd.CtrAsync(Deadline, "task", "exec", "--exec-id", "e1", "t2", "sh", "-c", "echo ok; exit 4");
            ShimFixture.AssertExit(exec, 4);
            Assert.Equal("ok\n", exec.StandardOutput);

            string ps = (await ctrd.CtrAsync(Deadline, "task", "ps", "t2")).EnsureSuccess().StandardOutput;
            string[] pids = ps.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0]).ToArray();
            Assert.Single(pids);
            Assert.Contains("RUNNING", (await ctrd.CtrAsync(Deadline, "task", "ls")).StandardOutput, StringComparison.Ordinal);

            await ctrd.KillAndWaitStoppedAsync("t2", Deadline);
            Assert.Contains("STOPPED", (await ctrd.CtrAsync(Deadline, "task", "ls")).StandardOutput, StringComparison.Ordinal);
            (await ctrd.CtrAsync(Deadline, "task", "rm", "t2")).EnsureSuccess();
        }, Deadline);

        IReadOnlyList<string> topics = await events.TopicsAsync("t2", "/containers/delete", Deadline);
        Assert.Equal(
            ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/exit", "/tasks/delete"],
            topics.Where(t => t.StartsWith("/tasks/", StringComparison.Ordinal)));
        string log = events.Text;
        Assert.Contains("\"exec_id\":\"e1\"", log, StringComparison.Ordinal);
        Assert.Contains("\"id\":\"e1\",", log, StringComparison.Ordinal);
        Assert.Contains("\"exit_status\":4", log, StringComparison.Ordinal);
        Assert.Contains("\"exit_status\":137", log, StringComparison.Ordinal);
    }

    [ShimFact]
    public async Task After_kill_9_of_the_shim_containerd_calls_delete_and_nothing_is_left()
    {
        await ctrd.WithDetachedTaskAsync("t4", [ShimFixture.Image, "t4", "sleep", "1d"], async () =>
        {
            Assert.Equal(2, ctrd.MarkedProcesses().Count); // the shim and its VMM
            await ctrd.KillShimAndWaitGoneAsync("t4", Deadline);
        }, Deadline);
    }

    [ShimFact]
    public async Task Spec_tmpfs_and_file_bind_mounts_env_cwd_and_an_exec_user_are_honoured_in_the_vm()
    {
        string hostFile = Path.Combine(ctrd.Root, "from-host.txt");
        await File.WriteAllTextAsync(hostFile, "written on the host\n", Deadline);
        await ctrd.WithDetachedTaskAsync("t5", ["--env", "GREETING=hello", "--cwd", "/tmp",
            "--mount", "type=tmpfs,src=tmpfs,dst=/scratch,options=size=1m:mode=750",
            "--mount", $"type=bind,src={hostFile},dst=/etc/from-host,options=rbind:ro",
            ShimFixture.Image, "t5", "sh", "-c", "echo \"$GREETING $(pwd)\" > /scratch/init.txt; sleep 1d"], async () =>
        {
            ProcessResult look = await ctrd.CtrAsync(Deadline, "task", "exec", "--exec-id", "e1", "t5", "sh", "-c",
                "sleep 1; cat /scratch/init.txt; grep ' /scratch ' /proc/mounts; grep -c ' /run tmpfs ' /proc/mounts; cat /etc/from-host");
            ShimFixture.AssertExit(look, 0);
            string[] lines = look.StandardOutput.Split('\n');
            Assert.Equal("hello /tmp", lines[0]);
            Assert.StartsWith("tmpfs /scratch tmpfs ", lines[1], StringComparison.Ordinal);
            Assert.Contains("size=1024k", lines[1], StringComparison.Ordinal);
            Assert.Contains("mode=750", lines[1], StringComparison.Ordinal);
            Assert.Equal("1", lines[2]); // containerd's default spec mounts a tmpfs on /run
            Assert.Equal("written on the host", lines[3]);

            ProcessResult user = await ctrd.CtrAsync(Deadline, "task", "exec", "--exec-id", "e2", "--user", "1000", "--cwd", "/etc", "t5", "sh", "-c", "id -u; pwd");
            ShimFixture.AssertExit(user, 0);
            Assert.Equal("1000\n/etc\n", user.StandardOutput);
            await ctrd.KillAndWaitStoppedAsync("t5", Deadline);
        }, Deadline);
    }

    [ShimFact]
    public async Task A_bind_of_a_host_directory_is_refused_naming_it_and_leaves_nothing()
    {
        string hostDir = ctrd.CreateDirectory("host-dir");
        ProcessResult run = await ctrd.RunAndRemoveAsync("t6", ["--mount", $"type=bind,src={hostDir},dst=/host,options=rbind:rw", ShimFixture.Image, "t6", "true"], Deadline);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains($"mount /host: a bind of the host directory {hostDir} cannot reach a Vessel VM", run.StandardError, StringComparison.Ordinal);
        await ctrd.AssertNothingLeftAsync("t6", Deadline);
    }

    [ShimFact]
    public async Task Without_ttrpc_address_events_go_through_containerd_publish_binary_in_order()
    {
        // containerd 1.6 always sets TTRPC_ADDRESS for its shims; a shim started without it
        // (another containerd, or an operator) must still reach containerd: `containerd publish`.
        using var events = EventsRecorder.Start(ctrd);
        var arguments = new global::Vessel.Shim.ShimArguments
        {
            Namespace = ShimFixture.Namespace,
            Address = ctrd.Socket,
            PublishBinary = ExternalProcess.ResolveTool("containerd"),
            Id = "pub1",
        };
        await using (var publisher = new global::Vessel.Shim.ShimEvents(arguments, ttrpcAddress: null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            await publisher.PublishAsync("/tasks/create", new global::Vessel.Containerd.Api.Events.TaskCreate { ContainerId = "pub1", Bundle = "/nonexistent", Pid = 42 });
            await publisher.PublishAsync("/tasks/start", new global::Vessel.Containerd.Api.Events.TaskStart { ContainerId = "pub1", Pid = 43 });
            await publisher.PublishAsync("/tasks/exit", new global::Vessel.Containerd.Api.Events.TaskExit { ContainerId = "pub1", Id = "pub1", Pid = 43, ExitStatus = 7 });
        }
        IReadOnlyList<string> topics = await events.TopicsAsync("pub1", "/tasks/exit", Deadline);
        Assert.Equal(["/tasks/create", "/tasks/start", "/tasks/exit"], topics);
        Assert.Contains("\"exit_status\":7", events.Text, StringComparison.Ordinal);
        Assert.Contains(ShimFixture.Namespace + " /tasks/create", events.Text, StringComparison.Ordinal);
    }

    /// <summary>`ctr events` running beside a test: its lines, and the topics of one container in order.</summary>
    private sealed class EventsRecorder : IDisposable
    {
        private readonly Process _process;
        private readonly System.Text.StringBuilder _text = new();

        private EventsRecorder(Process process)
        {
            _process = process;
        }

        public string Text
        {
            get
            {
                lock (_text)
                {
                    return _text.ToString();
                }
            }
        }

        public static EventsRecorder Start(ShimFixture ctrd)
        {
            var psi = new ProcessStartInfo("ctr") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in new[] { "-a", ctrd.Socket, "events" })
            {
                psi.ArgumentList.Add(a);
            }
            var recorder = new EventsRecorder(Process.Start(psi)!);
            recorder._process.OutputDataReceived += (_, e) =>
            {
                lock (recorder._text)
                {
                    recorder._text.Append(e.Data).Append('\n');
                }
            };
            recorder._process.ErrorDataReceived += (_, _) => { };
            recorder._process.BeginOutputReadLine();
            recorder._process.BeginErrorReadLine();
            Thread.Sleep(500); // subscribed before the first event
            return recorder;
        }

        /// <summary>The topics of events naming <paramref name="id"/>, once <paramref name="last"/> arrived.</summary>
        public async Task<IReadOnlyList<string>> TopicsAsync(string id, string last, CancellationToken cancellationToken)
        {
            for (int i = 0; i < 100 && !Text.Contains(last, StringComparison.Ordinal); i++)
            {
                await Task.Delay(100, cancellationToken);
            }
            // "2026-12-06 18:51:40.17 +0000 UTC NAMESPACE /tasks/start {...}"
            return Text.Split('\n')
                .Where(l => l.Contains($"\"{id}\"", StringComparison.Ordinal))
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Where(f => f.Length > 5)
                .Select(f => f[5])
                .ToList();
        }

        public void Dispose()
        {
            try
            {
                _process.Kill();
            }
            catch (InvalidOperationException)
            {
            }
            _process.WaitForExit();
            _process.Dispose();
        }
    }
}
