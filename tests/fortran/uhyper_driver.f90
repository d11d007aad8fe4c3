! Test driver for a generated UHYPER (tests/test_abaqus.py).
!
! Usage: uhyper_driver IN OUT. IN holds the number of states on its first line,
! then one state per line: BI1 BI2 AJ. OUT gets one line per state with the 17
! numbers U(1:2), UI1(1:3), UI2(1:6), UI3(1:6). The outputs are filled with
! HUGE before each call, so an entry the routine forgets to set shows up.
program uhyper_driver
  implicit none
  character(len=512) :: infile, outfile
  character(len=80) :: cmname
  integer :: n, i
  double precision :: bi1, bi2, aj, temp
  double precision :: u(2), ui1(3), ui2(6), ui3(6)
  double precision :: statev(1), fieldv(1), fieldvinc(1), props(1)

  call get_command_argument(1, infile)
  call get_command_argument(2, outfile)
  open (10, file=trim(infile), status='old', action='read')
  open (11, file=trim(outfile), status='replace', action='write')
  read (10, *) n
  cmname = 'KLAX'
  temp = 0.0d0
  statev = 0.0d0
  fieldv = 0.0d0
  fieldvinc = 0.0d0
  props = 0.0d0
  do i = 1, n
    read (10, *) bi1, bi2, aj
    u = huge(1.0d0)
    ui1 = huge(1.0d0)
    ui2 = huge(1.0d0)
    ui3 = huge(1.0d0)
    call uhyper(bi1, bi2, aj, u, ui1, ui2, ui3, temp, i, cmname, 0, 0, &
                statev, 0, fieldv, fieldvinc, 0, props)
    write (11, '(17ES26.17E3)') u, ui1, ui2, ui3
  end do
  close (10)
  close (11)
end program uhyper_driver
