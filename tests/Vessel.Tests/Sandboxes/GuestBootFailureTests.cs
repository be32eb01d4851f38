namespace Vessel.Tests.Sandboxes;

public sealed class GuestBootFailureTests
{
    [Fact]
    public void The_first_failure_marker_on_the_console_names_the_stage_and_its_reason()
    {
        const string Console = "[    1.2] Run /init as init process\nvessel-init: started at 1.50s\nvessel-init: stage=kit-mount failed: mount /dev/vdb on /vessel/kit: Invalid argument\n[    2.0] reboot: Restarting system\n";
        Assert.Equal(("kit-mount", "mount /dev/vdb on /vessel/kit: Invalid argument"), GuestBootFailure.FindFailure(Console));
        Assert.Null(GuestBootFailure.FindFailure("vessel-init: started at 1.50s\nvessel-init: starting agent at 2.00s\n"));
    }
}
